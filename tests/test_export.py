"""`bioplast export`: a result's recorded trials as NWB and CSV, checked against the result
itself (values, times, condition labels, provenance), read back by bioplast's own NWB reader
and compared with the model by `bioplast compare` (reference: a dataset compared with
itself, distances 0 and similarities 1)."""

import csv
import json
import shlex

import numpy as np
import pytest
import xarray as xr

from bioplast import cli

pynwb = pytest.importorskip("pynwb")

from bioplast.analysis.nwb import read_nwb  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny training result of the quickstart protocol (delayed cue): 16 recorded test
    trials of 46 steps of 5 ms, 8 units, condition label ``condition_cue``."""
    path = tmp_path_factory.mktemp("export") / "quick.nc"
    assert cli.main(["run", "protocols/quickstart.yaml", "-o", str(path), "--quiet",
                     "--set", "training.epochs=1", "--set", "training.steps_per_epoch=2",
                     "--set", "training.batch_size=16", "--set", "model.n_units=8",
                     "--set", "record.trials=16"]) == 0
    dataset = xr.load_dataset(path)
    assert len(np.unique(dataset["condition_cue"].values)) == 2  # both cues among the trials
    return path, dataset


def export(*argv) -> int:
    return cli.main(["export", *map(str, argv)])


def test_nwb_reads_back_as_the_recorded_values_times_and_conditions(trained, tmp_path):
    path, dataset = trained
    out = tmp_path / "model.nwb"
    assert export(path, "-o", out, "--quiet") == 0
    dt = float(dataset.attrs["dt"])
    back = read_nwb(out, source="r")  # default bin: the sampling interval, one step per bin
    assert back.attrs["bin_size"] == pytest.approx(dt, rel=1e-12)
    np.testing.assert_allclose(back["activity"].values, dataset["r"].values, rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(back["time"].values, dataset["time"].values, rtol=0,
                               atol=1e-12)
    np.testing.assert_array_equal(back["condition_cue"].values,
                                  dataset["condition_cue"].values)
    assert back["activity"].attrs["units"] == dataset["r"].attrs["units"]
    # bins of two steps: the mean of the two steps (samples stamped mid-step, never on an
    # edge), by hand from the result
    coarse = read_nwb(out, source="r", bin_size=2 * dt)["activity"].values
    r = dataset["r"].values.astype(float)  # the run's float32 values, averaged in float64
    pairs = r[:, :r.shape[1] // 2 * 2].reshape(r.shape[0], -1, 2, r.shape[2]).mean(axis=2)
    np.testing.assert_allclose(coarse, pairs, rtol=0, atol=1e-12)


def test_nwb_metadata_holds_the_model_protocol_and_versions(trained, tmp_path):
    path, dataset = trained
    out = tmp_path / "model.nwb"
    assert export(path, "-o", out, "--quiet") == 0
    assert pynwb.validate(path=str(out)) == []  # reference: the NWB schema
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwbfile = io.read()
        assert nwbfile.protocol == dataset.attrs["protocol"]
        assert nwbfile.source_script == dataset.attrs["model"]
        assert nwbfile.source_script_file_name == "leaky_rate.yaml"
        notes = json.loads(nwbfile.notes)
        assert notes["result"]["model"] == dataset.attrs["model"]
        assert notes["result"]["bioplast_version"] == dataset.attrs["bioplast_version"]
        versions = json.loads(notes["result"]["library_versions"])
        assert versions["torch"] and versions["brian2"]
        assert notes["export"]["variable"] == "r" and notes["export"]["dt"] == \
            dataset.attrs["dt"]
        assert nwbfile.session_start_time.isoformat() == dataset.attrs["created"]
        series = nwbfile.acquisition["r"]
        n_trials, n_steps, n_units = dataset["r"].shape
        assert series.data.shape == (n_trials * n_steps, n_units)
        # trial j from j*T to (j+1)*T, step k stamped at j*T + (k + 1/2) dt (the layout)
        period = n_steps * dataset.attrs["dt"]
        np.testing.assert_allclose(nwbfile.trials["start_time"][:],
                                   np.arange(n_trials) * period)
        np.testing.assert_allclose(series.timestamps[n_steps + 2],
                                   period + 2.5 * dataset.attrs["dt"])


def test_compare_with_its_own_export_is_perfect_and_the_printed_command_works(
        trained, tmp_path, capsys):
    path, _ = trained
    out = tmp_path / "model.nwb"
    assert export(path, "-o", out) == 0
    said = "compare the model with it: "
    hint = [line for line in capsys.readouterr().err.splitlines() if line.startswith(said)]
    command = shlex.split(hint[0][len(said):])
    assert command[:4] == ["bioplast", "compare", str(path), str(out)]
    numbers = tmp_path / "cmp.nc"
    assert cli.main([*command[1:], "--shuffles", "0", "-o", str(numbers), "--quiet"]) == 0
    value = xr.load_dataset(numbers)["value"]
    # identity: distances 0, similarities 1 (arccos near 1 amplifies rounding: 1e-6)
    np.testing.assert_allclose(value.sel(metric=["procrustes", "cca"]), 0, atol=1e-6)
    np.testing.assert_allclose(value.sel(metric=["cka", "rsa"]), 1, atol=1e-9)


def test_csv_holds_every_value_time_and_condition(trained, tmp_path):
    path, dataset = trained
    out = tmp_path / "model.csv"
    assert export(path, "-o", out, "--quiet") == 0
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["trial", "time_s", "unit", "value", "condition_cue"]
    table = np.array(rows[1:], dtype=float)
    r = dataset["r"]
    n_trials, n_steps, n_units = r.shape
    assert table.shape == (n_trials * n_steps * n_units, 5)
    # rows run over trial, then time, then unit: the result's array in C order, exactly
    np.testing.assert_array_equal(table[:, 3], r.values.astype(float).ravel())
    trial, step, unit = np.unravel_index(np.arange(len(table)), r.shape)
    np.testing.assert_array_equal(table[:, 0], dataset["trial"].values[trial])
    np.testing.assert_array_equal(table[:, 1], dataset["time"].values[step])
    np.testing.assert_array_equal(table[:, 2], dataset["unit"].values[unit])
    np.testing.assert_array_equal(table[:, 4], dataset["condition_cue"].values[trial])


def test_the_default_variable_is_the_readout_source(tmp_path):
    """A simulation recording I_rec before r: the export takes r, leaky_rate's readout
    source (models/leaky_rate.yaml); --variable takes the other; no conditions: a trials
    table of times only."""
    result = tmp_path / "sim.nc"
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=3", "--trials", "2",
                     "--steps", "6", "--record", "I_rec,r", "-o", str(result),
                     "--quiet"]) == 0
    dataset = xr.load_dataset(result)
    assert [n for n in dataset.data_vars if dataset[n].dims == ("trial", "time", "unit")] \
        == ["I_rec", "r"]
    assert export(result, "-o", tmp_path / "r.nwb", "--quiet") == 0
    back = read_nwb(tmp_path / "r.nwb", source="r", bin_size=float(dataset.attrs["dt"]))
    np.testing.assert_allclose(back["activity"].values, dataset["r"].values, atol=1e-12)
    assert [c for c in back.coords if back[c].dims == ("trial",)] == ["trial"]
    assert export(result, "-o", tmp_path / "i.csv", "--variable", "I_rec", "--quiet") == 0
    with open(tmp_path / "i.csv", newline="") as handle:
        values = [float(row["value"]) for row in csv.DictReader(handle)]
    np.testing.assert_array_equal(values, dataset["I_rec"].values.ravel())


def test_an_ensemble_needs_select(trained, tmp_path, capsys):
    path, dataset = trained
    doubled = tmp_path / "two.nc"
    two = xr.concat([dataset, dataset.assign(r=dataset["r"] * 2)], dim="member")
    two.assign_coords(member=[0, 1]).to_netcdf(doubled)
    assert export(doubled, "-o", tmp_path / "x.csv") == 2
    assert "--select member=0" in capsys.readouterr().err
    assert export(doubled, "-o", tmp_path / "x.csv", "--select", "member=1", "--quiet") == 0
    with open(tmp_path / "x.csv", newline="") as handle:
        values = [float(row["value"]) for row in csv.DictReader(handle)]
    np.testing.assert_allclose(values, 2 * dataset["r"].values.astype(float).ravel())


def test_bad_input_is_one_line_naming_the_file_and_flag(trained, tmp_path, capsys,
                                                       monkeypatch):
    path, dataset = trained

    def error(*argv):
        assert export(*argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bioplast: error: ")
        return lines[0]

    assert "give --format nwb|csv" in error(path, "-o", tmp_path / "out.txt")
    assert "would overwrite the input" in error(path, "-o", path, "--format", "csv")
    message = error(path, "-o", tmp_path / "o.nwb", "--variable", "v")
    assert f"{path}: --variable: no recorded variable 'v'" in message and "(recorded: r)" \
        in message
    untrained = tmp_path / "untrained.nc"
    dataset.drop_vars("r").to_netcdf(untrained)
    assert "holds no recorded trials" in error(untrained, "-o", tmp_path / "o.csv")
    nan = tmp_path / "nan.nc"
    r = dataset["r"].values.copy()
    r[3, 5, 1] = np.nan
    dataset.assign(r=(dataset["r"].dims, r)).to_netcdf(nan)
    message = error(nan, "-o", tmp_path / "o.nwb")
    assert f"{nan}: r: holds NaN" in message and "--format csv" in message
    assert not (tmp_path / "o.nwb").exists()
    assert export(nan, "-o", tmp_path / "nan.csv", "--quiet") == 0  # CSV keeps NaN
    with open(tmp_path / "nan.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    n_steps, n_units = r.shape[1:]
    assert rows[(3 * n_steps + 5) * n_units + 1]["value"] == "nan"
    monkeypatch.setitem(__import__("sys").modules, "pynwb", None)  # not installed
    assert "needs pynwb: pip install 'bioplast[nwb]'" in error(path, "-o", tmp_path / "p.nwb")


def test_text_and_boolean_labels_survive_nwb_and_csv(tmp_path):
    """Labels of every kind a result may hold (text as netCDF stores it, booleans,
    floats with NaN), read back equal to those written."""
    result = tmp_path / "sim.nc"
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=2", "--trials", "3",
                     "--steps", "4", "-o", str(result), "--quiet"]) == 0
    labels = {"side": ["left", "right", "left"], "go": [True, False, True],
              "delay": [0.1, np.nan, 0.3]}
    labelled = tmp_path / "labelled.nc"
    xr.load_dataset(result).assign_coords(
        {name: ("trial", values) for name, values in labels.items()}).to_netcdf(labelled)
    assert export(labelled, "-o", tmp_path / "l.nwb", "--quiet") == 0
    back = read_nwb(tmp_path / "l.nwb", source="r",
                    bin_size=float(xr.load_dataset(labelled).attrs["dt"]))
    for name, values in labels.items():
        np.testing.assert_array_equal(back[name].values, values)
    assert export(labelled, "-o", tmp_path / "l.csv", "--quiet") == 0
    with open(tmp_path / "l.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first_of_trial = rows[::4 * 2]  # 4 steps x 2 units per trial
    assert [row["side"] for row in first_of_trial] == labels["side"]
    assert [row["go"] for row in first_of_trial] == ["True", "False", "True"]
    assert [row["delay"] for row in first_of_trial] == ["0.1", "nan", "0.3"]
