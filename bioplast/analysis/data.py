"""Reading activity for analyses: bioplast results and recordings alike.

Analyses take ``(trial, time, unit)`` activity: a numpy array, a DataArray with those dims,
or a Dataset (then a variable with those dims, by name or the first one found). A ``time``
coordinate must be evenly spaced, in seconds. Anything that does not fit is an
`InputError` naming the missing dim, coordinate or variable.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError

ACTIVITY_DIMS = (schema.TRIAL, schema.TIME, schema.UNIT)


def activity(data, variable: str | None = None, where: str = "data") -> tuple[xr.DataArray, str]:
    """``(DataArray (trial, time, unit), its name)`` from ``data``."""
    if isinstance(data, np.ndarray):
        if data.ndim != 3:
            raise InputError(f"an activity array must be (trial, time, unit), got shape "
                             f"{data.shape}", file=where)
        return xr.DataArray(data, dims=ACTIVITY_DIMS), "activity"
    if isinstance(data, xr.Dataset):
        if variable is None:
            variable = next((str(name) for name, v in data.data_vars.items()
                             if set(ACTIVITY_DIMS) <= set(v.dims)), None)
            if variable is None:
                raise InputError("no variable with dims (trial, time, unit) (variables: "
                                 + ", ".join(f"{n} {tuple(v.dims)}" for n, v in
                                             data.data_vars.items()) + ")", file=where)
        if variable not in data:
            raise InputError(f"no variable '{variable}' (variables: "
                             f"{', '.join(map(str, data.data_vars))})", file=where)
        data = data[variable]
    if not isinstance(data, xr.DataArray):
        raise InputError(f"cannot read activity from {type(data).__name__}", file=where)
    missing = [dim for dim in ACTIVITY_DIMS if dim not in data.dims]
    if missing:
        raise InputError(f"'{data.name or 'activity'}' lacks the dim(s) {', '.join(missing)} "
                         f"(it has {', '.join(map(str, data.dims))}; activity is (trial, time, "
                         "unit))", file=where)
    extra = [dim for dim in data.dims if dim not in ACTIVITY_DIMS]
    if extra:
        raise InputError(f"'{data.name or 'activity'}' has extra dim(s) {', '.join(extra)}: "
                         "select one (e.g. .isel(member=0)) first", file=where)
    return data.transpose(*ACTIVITY_DIMS), str(data.name or "activity")


def time_step(traces: xr.DataArray, where: str = "data") -> tuple[float, str]:
    """``(dt, unit)``: from an evenly spaced ``time`` coordinate in seconds, or ``(1,
    "step")`` without one."""
    if schema.TIME not in traces.coords:
        return 1.0, "step"
    time = np.asarray(traces[schema.TIME].values, dtype=float)
    if time.size < 2:
        raise InputError("the time coordinate needs at least two samples", file=where)
    steps = np.diff(time)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=0) or steps[0] <= 0:
        raise InputError("the time coordinate is not evenly spaced and increasing",
                         file=where, key=schema.TIME)
    units = traces[schema.TIME].attrs.get(schema.ATTR_UNITS, "second")
    if units not in ("second", "s", "seconds"):
        raise InputError(f"time is in '{units}'; bioplast reads seconds", file=where,
                         key=schema.TIME)
    return float(steps[0]), "second"
