"""The header of a result file, and the decoders of the attrs that results store.

`read_header` reads a netCDF file's global attrs, dims and variables (names, dims,
attrs), not their values, with netCDF4 alone: light on purpose (no xarray, torch or
Brian2), so that ``bioplast info`` answers in well under a second. `bioplast.results`
builds and loads whole datasets and re-exports the decoders (`stored_json`, `stored_int`,
`attr_where`, and `dtype_text` for messages about stored values that are not real numbers);
they take anything with ``attrs``, an `xarray.Dataset` or a `Header`, and their errors name
the file and the attribute.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import InputError
from .files import check_regular_file


@dataclass(frozen=True)
class VariableHeader:
    """A variable's dims and attrs, as xarray decodes them: a character array (netCDF
    ``char``) is text, without its string-length dim."""

    dims: tuple[str, ...]
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class Header:
    """What `read_header` reads, in the shape of an `xarray.Dataset`'s metadata.

    Attributes
    ----------
    attrs : dict
        The global attributes as netCDF4 returns them (text, numpy scalars or arrays).
    sizes : dict of str to int
        Each dim used by a variable and its length, in order of first use by the variables
        other than index coordinates, then by those (the order of `xarray.Dataset.sizes`).
    variables : dict of str to VariableHeader
        Every variable, in file order.
    coord_names : frozenset of str
        The coordinates among them: a variable named after its one dim, and the variables
        a ``coordinates`` attribute names (CF conventions, as xarray reads them).
    """

    attrs: Mapping[str, Any]
    sizes: Mapping[str, int]
    variables: Mapping[str, VariableHeader]
    coord_names: frozenset[str]

    @property
    def data_vars(self) -> dict[str, VariableHeader]:
        """The variables that are not coordinates, in file order."""
        return {name: variable for name, variable in self.variables.items()
                if name not in self.coord_names}


def unreadable(error: BaseException, path: str | os.PathLike) -> InputError:
    """The InputError for a file that netCDF4 / HDF5 failed to read (they raise many types
    for damaged files): its reason is the OS's message or the error's type."""
    reason = type(error).__name__ if not isinstance(error, OSError) else \
        (error.strerror or "unreadable")
    return InputError(f"not a readable netCDF file ({reason})", file=str(path))


def read_header(path: str | os.PathLike) -> Header:
    """The global attrs, dims and variables (dims and attrs, not values) of a netCDF file.

    InputError naming the file if it is missing, not a regular file, not netCDF or damaged
    (the same errors as `bioplast.results.load`).
    """
    import netCDF4
    path = check_regular_file(path, "netCDF file")
    try:
        with netCDF4.Dataset(path, "r") as handle:
            attrs = {key: handle.getncattr(key) for key in handle.ncattrs()}
            shapes, variables = {}, {}
            for name, variable in handle.variables.items():
                dims, shape = tuple(variable.dimensions), tuple(variable.shape)
                if dims and isinstance(variable.dtype, np.dtype) and variable.dtype == "S1":
                    dims, shape = dims[:-1], shape[:-1]  # characters along the last dim
                shapes[name] = shape
                variables[name] = VariableHeader(
                    dims, {key: variable.getncattr(key) for key in variable.ncattrs()})
    except Exception as error:  # netCDF4/HDF5 raise many types for damaged files
        raise unreadable(error, path) from None
    indexes = [name for name, variable in variables.items() if variable.dims == (name,)]
    sizes = {}  # in order of first use, the index coordinates last (as xarray orders them)
    for name in [n for n in variables if n not in indexes] + indexes:
        for dim, size in zip(variables[name].dims, shapes[name]):
            sizes.setdefault(dim, int(size))
    coord_names = set(indexes)
    for listing in [attrs.get("coordinates")] + [v.attrs.get("coordinates")
                                                  for v in variables.values()]:
        if isinstance(listing, str):
            coord_names.update(name for name in listing.split() if name in variables)
    return Header(attrs, sizes, variables, frozenset(coord_names))


def dtype_text(dtype: np.dtype) -> str:
    """``complex numbers``, ``text``, ... for messages about values that are not real."""
    if dtype.kind == "c" or (dtype.names and set(dtype.names) == {"r", "i"}):
        return "complex numbers (take the real part or the magnitude first)"
    if dtype.kind in "OUS":
        return "text or objects"
    if dtype.kind in "mM":
        return "dates or durations"
    return f"{dtype} values" if not dtype.names else "compound values"


def attr_where(where: str, attr: str) -> str:
    """``FILE (attribute 'ATTR')``: where an error in a stored attribute is."""
    return f"{where} (attribute '{attr}')"


def stored_json(dataset, attr: str, where: str, default, kind=dict):
    """The JSON attr ``attr`` of a result (a Dataset or a `Header`; ``default`` if absent),
    checked to be ``kind``."""
    if attr not in dataset.attrs:
        return default
    text = dataset.attrs[attr]
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, kind):
        raise InputError(f"the attribute '{attr}' is not a JSON {kind.__name__}: the file "
                         "was edited or damaged", file=where)
    return value


def stored_int(dataset, attr: str, where: str, default: int, *,
               minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """The integer attr ``attr`` of a result (a Dataset or a `Header`; ``default`` if
    absent), within bounds."""
    if attr not in dataset.attrs:
        return default
    value = dataset.attrs[attr]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InputError(f"the attribute '{attr}' must be an integer from {minimum} to "
                         f"{maximum}, got {str(value)[:40]!r}: the file was edited or damaged",
                         file=where)
    return value
