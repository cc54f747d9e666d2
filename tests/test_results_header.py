"""A netCDF file's header read with netCDF4 alone (`bioplast.results_header`): the same
dims, variables and attrs as xarray reads, the same errors as `bioplast.results.load`."""

import warnings

import netCDF4
import numpy as np
import pytest

from bioplast.cli import info_lines
from bioplast.errors import InputError
from bioplast.results import load
from bioplast.results_header import read_header, stored_int, stored_json


def _same_as_xarray(path) -> None:
    header = read_header(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load(path, values=False)
    with dataset:
        assert list(header.sizes.items()) == list(dataset.sizes.items())
        assert list(header.data_vars) == list(dataset.data_vars)
        assert set(header.variables) == set(dataset.variables)
        for name, variable in header.variables.items():
            assert variable.dims == dataset[name].dims, name
            assert variable.attrs.get("units") == dataset[name].attrs.get("units"), name
        assert {k: v for k, v in header.attrs.items() if k != "coordinates"}.keys() == \
            dataset.attrs.keys()
        assert list(info_lines(header, str(path))) == list(info_lines(dataset, str(path)))


def test_character_arrays_auxiliary_coordinates_and_unused_dims_as_xarray_reads_them(
        tmp_path):
    path = tmp_path / "chars.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as handle:
        for dim, size in (("x", 3), ("string8", 8), ("unused", 4)):
            handle.createDimension(dim, size)
        names = handle.createVariable("names", "S1", ("x", "string8"))
        names[:] = netCDF4.stringtochar(np.array(["a", "bb", "ccc"], "S8"))
        names.units = "1"
        handle.createVariable("value", "f8", ("x",)).coordinates = "names"
        handle.createVariable("x", "f8", ("x",))[:] = [1.0, 2.0, 3.0]
        handle.createVariable("label", "f8", ())
        handle.kind = "simulation"
        handle.coordinates = "label elsewhere"
    header = read_header(path)
    assert dict(header.sizes) == {"x": 3}  # text, not characters along string8
    assert list(header.data_vars) == ["value"]
    _same_as_xarray(path)


def test_unlimited_dims_text_variables_groups_and_attr_types_as_xarray_reads_them(tmp_path):
    path = tmp_path / "mixed.nc"
    with netCDF4.Dataset(path, "w") as handle:
        handle.createDimension("step", None)
        handle.createDimension("unit", 2)
        rates = handle.createVariable("rates", "f4", ("step", "unit"))
        rates[0:5, :] = 1.0
        rates.units = "Hz"
        words = handle.createVariable("words", str, ("unit",))
        words[0], words[1] = "a", "bcd"
        handle.createVariable("unit", "i8", ("unit",))[:] = [0, 1]
        handle.createGroup("inner").createVariable("hidden", "f8", ())
        handle.backend, handle.backend_options = "torch", '{"dtype": "float32"}'
        handle.dt, handle.seed, handle.noise = np.float32(0.001), np.array([3, 4]), np.int8(0)
    header = read_header(path)
    assert dict(header.sizes) == {"step": 5, "unit": 2} and "hidden" not in header.variables
    _same_as_xarray(path)


@pytest.mark.parametrize("content", [b"", b"just some text\n", b"\x89HDF\r\n\x1a\n" + bytes(600)])
def test_unreadable_files_give_the_errors_load_gives(tmp_path, content):
    path = tmp_path / "r.nc"
    path.write_bytes(content)
    with pytest.raises(InputError) as header_error:
        read_header(path)
    with pytest.raises(InputError) as load_error:
        load(path, values=False)
    assert str(header_error.value) == str(load_error.value)
    assert str(header_error.value).startswith(f"{path}: not a readable netCDF file (")


def test_missing_files_and_directories_are_named(tmp_path):
    with pytest.raises(InputError, match="nope.nc: netCDF file not found"):
        read_header(tmp_path / "nope.nc")
    with pytest.raises(InputError, match="is a directory"):
        read_header(tmp_path)


def test_stored_attrs_are_decoded_from_the_header_and_errors_name_file_and_attribute(
        tmp_path):
    path = tmp_path / "r.nc"
    with netCDF4.Dataset(path, "w") as handle:
        handle.backend_options, handle.noise = '{"dtype": "float64"}', np.int8(1)
        handle.resumed_from_epoch, handle.seed = "later", np.int64(-5)
    header = read_header(path)
    assert stored_json(header, "backend_options", "r.nc", {}) == {"dtype": "float64"}
    assert stored_int(header, "noise", "r.nc", 0, maximum=1) == 1
    assert stored_int(header, "absent", "r.nc", 7) == 7
    with pytest.raises(InputError, match=r"^r.nc: the attribute 'resumed_from_epoch' must "):
        stored_int(header, "resumed_from_epoch", "r.nc", -1, minimum=-1)
    with pytest.raises(InputError, match="'seed' must be an integer from 0"):
        stored_int(header, "seed", "r.nc", 0)
    with pytest.raises(InputError, match="'noise' is not a JSON dict"):
        stored_json(header, "noise", "r.nc", {})
