"""Result datasets: layout, provenance, and the netCDF round trip (reference: the dataset
before saving, compared with xarray.testing.assert_identical, attrs included)."""

import json

import numpy as np
import pytest
import xarray as xr

import bioplast
from bioplast import results, schema
from conftest import random_inputs


@pytest.mark.parametrize("model_name,members", [("leaky_rate", None), ("ei_rate", None),
                                                ("leaky_tau", 3)])
def test_netcdf_round_trip_is_identical(tmp_path, model_name, members):
    model = bioplast.load_model(model_name, n_units=10)
    params = model.init_params(0)
    if members:
        params = {k: np.stack([model.init_params(s)[k] for s in range(members)])
                  for k in params}
    ds = bioplast.simulate(model, params, random_inputs(model, 3, 15), seed=4)
    path = bioplast.save(ds, tmp_path / "run.nc")
    loaded = bioplast.load(path)
    xr.testing.assert_identical(ds, loaded)
    assert loaded.attrs == ds.attrs
    assert xr.open_dataset(path).attrs[schema.ATTR_MODEL] == model.text


def test_dataset_layout_and_provenance():
    model = bioplast.load_model("ei_rate", n_units=10)
    ds = bioplast.simulate(model, None, random_inputs(model, 2, 7), seed=3)
    assert ds["x"].dims == ("trial", "time", "unit")
    assert ds["W_rec"].dims == ("unit", "presynaptic")
    assert ds["W_in"].dims == ("unit", "input")
    assert ds["tau"].dims == ("unit",) and ds["tau"].attrs["units"] == "second"
    np.testing.assert_allclose(ds["time"].values, np.arange(7) * 1e-3)
    assert ds["time"].attrs["units"] == "second"
    assert list(ds["population"].values) == ["E"] * 8 + ["I"] * 2
    for key in ("bioplast_version", "model", "seed", "backend", "status", "created",
                "library_versions"):
        assert key in ds.attrs
    assert ds.attrs["status"] == "complete" and ds.attrs["seed"] == 3
    assert "torch" in json.loads(ds.attrs["library_versions"])
    # the stored model text and parameters re-simulate the same trajectories
    again = bioplast.simulate(bioplast.load_model(ds.attrs["model"] + "\n", n_units=10),
                              {k: ds[k].values for k in model.params}, ds["inputs"].values,
                              initial_state={"x": ds["initial_x"].values}, seed=3)
    np.testing.assert_array_equal(again["x"].values, ds["x"].values)


def test_save_is_atomic(tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous file untouched and no temp file."""
    model = bioplast.load_model("leaky_rate", n_units=4)
    ds = bioplast.simulate(model, None, random_inputs(model, 1, 3))
    path = bioplast.save(ds, tmp_path / "run.nc")
    before = path.read_bytes()

    def broken(self, target, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"CDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError):
        results.save(ds, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def test_load_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(bioplast.InputError, match="file not found"):
        bioplast.load(tmp_path / "missing.nc")
    broken = tmp_path / "broken.nc"
    broken.write_text("not netcdf")
    with pytest.raises(bioplast.InputError, match="broken.nc"):
        bioplast.load(broken)
