"""Reading activity for analyses: bioplast results and recordings alike.

Analyses take ``(trial, time, unit)`` activity: a numpy array, a DataArray with those dims,
or a Dataset (then a variable with those dims, by name or the first one found). A ``time``
coordinate must be evenly spaced, in seconds. Anything that does not fit is an
`InputError` naming the missing dim, coordinate or variable.

Activity must be real numbers (integers and booleans are read as floats). NaN and inf
samples are dropped where an analysis can do without them (`drop_nonfinite`: units with no
finite sample at all, then every trial that holds one), and the analyses say what they
dropped (a ``dropped`` attr of their results); where too little would remain, an
`InputError` names the file and variable and says how many NaN samples there are, and where.
A dataset holding several networks (an ensemble's ``member`` dim, a sweep's grid dims) is an
`InputError` that lists the dims to choose one network from (`check_one_network`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError
from ..results_header import dtype_text

ACTIVITY_DIMS = (schema.TRIAL, schema.TIME, schema.UNIT)
#: finite values beyond this size are refused: their squares (variances, SVDs) overflow
MAX_MAGNITUDE = 1e150


def activity_names(dataset: xr.Dataset) -> list[str]:
    """The variables with dims ``(trial, time, unit)`` (and maybe more), in order."""
    return [str(name) for name, variable in dataset.data_vars.items()
            if set(ACTIVITY_DIMS) <= set(variable.dims)]


def activity(data, variable: str | None = None, where: str = "data") -> tuple[xr.DataArray, str]:
    """``(DataArray (trial, time, unit), its name)`` from ``data``."""
    if isinstance(data, np.ndarray):
        if data.ndim != 3:
            raise InputError(f"an activity array must be (trial, time, unit), got shape "
                             f"{data.shape}", file=where)
        data = xr.DataArray(data, dims=ACTIVITY_DIMS, name="activity")
    if isinstance(data, xr.Dataset):
        if variable is None:
            variable = next(iter(activity_names(data)), None)
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
        raise InputError(f"'{data.name or 'activity'}' has extra dim(s) "
                         f"{', '.join(map(str, extra))}: choose one network with --select "
                         f"{extra[0]}=VALUE (in Python: .isel({extra[0]}=0))", file=where)
    name = str(data.name or "activity")
    empty = [f"{dim}={data.sizes[dim]}" for dim in ACTIVITY_DIMS if data.sizes[dim] == 0]
    if empty:
        raise InputError(f"is empty ({', '.join(empty)}): nothing to analyse", file=where,
                         key=name)
    kind = data.dtype.kind
    if kind not in "biuf":
        raise InputError(f"holds {dtype_text(data.dtype)}; activity must be real numbers",
                         file=where, key=name)
    if kind != "f" or data.dtype.itemsize < 8:
        data = data.astype(np.float64)
    return data.transpose(*ACTIVITY_DIMS), name


def check_one_network(dataset, where: str = "data") -> None:
    """InputError if ``dataset`` holds several networks: a ``member`` dim, a sweep's grid
    dims (coordinates with a ``key`` attr), or any dims beyond ``(trial, time, unit)`` of
    its activity variables; the message lists them and how to choose one with
    ``--select``."""
    if not isinstance(dataset, xr.Dataset):
        return
    dims = []
    if schema.MEMBER in dataset.dims:
        dims.append(schema.MEMBER)
    for dim in dataset.dims:
        if dim in dataset.coords and "key" in dataset[dim].attrs and dim not in dims:
            dims.append(dim)
    for name in activity_names(dataset):
        dims += [d for d in dataset[name].dims if d not in ACTIVITY_DIMS and d not in dims]
    if not dims:
        return
    count = int(np.prod([dataset.sizes[dim] for dim in dims]))
    choices = []
    for dim in dims:
        if dim in dataset.coords and dataset.sizes[dim]:
            value = dataset[dim].values[0]
            choices.append(f"--select {dim}={value.item() if hasattr(value, 'item') else value}")
        else:
            choices.append(f"--select {dim}=0")
    kind = dataset.attrs.get(schema.ATTR_KIND, "")
    what = "a sweep" if kind == "sweep" else "the file"
    raise InputError(f"{what} holds {count} network{'s' if count != 1 else ''} along "
                     f"({', '.join(map(str, dims))}): choose one with {' '.join(choices)}",
                     file=where)


def _indices(mask: np.ndarray, limit: int = 6) -> str:
    """``1, 4, 7`` (at most ``limit`` shown, then ``...``) of the True entries of ``mask``."""
    shown = [str(i) for i in np.flatnonzero(mask)[:limit]]
    return ", ".join(shown) + (", ..." if mask.sum() > limit else "")


AXES = (("trial", "trials"), ("time point", "time points"), ("unit", "units"))


def describe_nonfinite(values: np.ndarray, axes=AXES) -> str:
    """Where the NaN and inf samples of ``values`` ``(trial, time, unit)`` are, in words:
    ``3 NaN samples in 1 of 4 trials (trial 1), 2 of 40 time points (steps 5-6), 1 of 8
    units (unit 2)``."""
    nan, inf = np.isnan(values), np.isinf(values)
    bad = nan | inf
    counts = " and ".join(f"{n} {kind}" for n, kind in ((int(nan.sum()), "NaN"),
                                                         (int(inf.sum()), "inf")) if n)
    parts = []
    for axis, names in enumerate(axes):
        if names is None:
            continue
        singular, plural = names
        hit = bad.any(axis=tuple(a for a in range(3) if a != axis))
        total = values.shape[axis]
        if axis == 1:
            steps = np.flatnonzero(hit)
            span = f"step {steps[0]}" if steps[0] == steps[-1] else \
                f"steps {steps[0]}-{steps[-1]}"
            parts.append(f"{hit.sum()} of {total} {plural} ({span})")
        else:
            label = singular if hit.sum() == 1 else plural
            parts.append(f"{hit.sum()} of {total} {plural} ({label} {_indices(hit)})")
    return f"{counts} sample{'s' if bad.sum() > 1 else ''} in " + ", ".join(parts)


def drop_nonfinite(traces: xr.DataArray, where: str = "data", *, min_trials: int = 1,
                   purpose: str = "the analysis", label: str | None = None
                   ) -> tuple[xr.DataArray, str | None, np.ndarray]:
    """``(traces without NaN/inf, note, kept trials (bool))``: units with no finite sample
    are dropped, then every trial that still holds a NaN or inf. ``note`` says what was
    dropped (None if nothing). InputError (file ``where``, key the variable) if fewer than
    ``min_trials`` trials would remain, or if finite values are too large to analyse.
    Dropped trials and units keep their place as ``trial``/``unit`` coordinates (their
    indices in the file, where the file had no coordinate)."""
    name = str(traces.name or "activity")
    subject = f"in {label}: " if label else ""  # errors are keyed by the variable's name
    label = label or name
    values = traces.values
    finite = np.isfinite(values)
    largest = float(np.max(np.abs(values[finite]), initial=0.0))
    if largest > MAX_MAGNITUDE:
        raise InputError(f"{subject}holds values as large as {largest:.3g}: too large to "
                         "analyse (rescale it)", file=where, key=name)
    n_trials, _, n_units = values.shape
    if finite.all():
        return traces, None, np.ones(n_trials, dtype=bool)
    where_bad = describe_nonfinite(values)
    dead = ~finite.any(axis=(0, 1))
    if dead.all():
        raise InputError(f"{subject}holds no finite value ({where_bad})", file=where, key=name)
    bad_trials = ~finite[:, :, ~dead].all(axis=(1, 2))
    kept = ~bad_trials
    if kept.sum() < min_trials:
        what = "every trial holds" if not kept.any() else \
            f"{bad_trials.sum()} of {n_trials} trials hold"
        raise InputError(f"{subject}{what} NaN or inf ({where_bad}); without those trials "
                         f"{kept.sum()} would remain (at least {min_trials} needed for "
                         f"{purpose})", file=where, key=name)
    coords = {}
    for dim, size in ((schema.TRIAL, n_trials), (schema.UNIT, n_units)):
        if dim not in traces.coords:
            coords[dim] = np.arange(size)
    cleaned = traces.assign_coords(coords).isel({schema.TRIAL: kept, schema.UNIT: ~dead})
    return cleaned, dropped_note(where, label, values, bad_trials, dead), kept


def dropped_note(where: str, label: str, values: np.ndarray, bad_trials: np.ndarray,
                 dead_units: np.ndarray | None = None, axes=AXES) -> str:
    """What `drop_nonfinite` (or an analysis doing the same) dropped, in one sentence."""
    n_trials, _, n_units = values.shape
    dead_units = np.zeros(n_units, dtype=bool) if dead_units is None else dead_units
    dropped = []
    if dead_units.any():
        dropped.append(f"{dead_units.sum()} of {n_units} units (unit"
                       f"{'s' if dead_units.sum() > 1 else ''} {_indices(dead_units)}) with "
                       "no finite sample")
    if bad_trials.any():
        dropped.append(f"{bad_trials.sum()} of {n_trials} trials (trial"
                       f"{'s' if bad_trials.sum() > 1 else ''} {_indices(bad_trials)})")
    return (f"{where}: {label}: {describe_nonfinite(values, axes)}: dropped "
            f"{' and '.join(dropped)}; {(~bad_trials).sum()} trials remain")


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
