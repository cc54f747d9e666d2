"""`analyze`: timescales, dynamics and geometry of a bioplast result or of a recording.

For a bioplast result (a simulation or training file, which stores its model text and
parameters) the network is driven again where an analysis needs it: timescales from a long
run with random inputs after a burn-in (Khajehabdollahi et al.: binary inputs for the bit
tasks), fixed and slow points from states sampled from the recorded trials, and the limit
cycle / slow point classification from the recorded test trials followed by zero input. A
recording (any netCDF file with ``(trial, time, unit)`` activity) gets the analyses that
need no model: timescales and geometry of its activity, and the classification of its
trials as they are.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError
from ..model import load_model
from ..results import INITIAL_PREFIX, provenance
from .data import activity, time_step
from .dynamics import classify_mechanism, extended_run, find_fixed_points, starting_points
from .geometry import geometry
from .timescales import timescales

BIT_TASKS = ("n_parity", "n_dms")
DRIVES = ("auto", "bits", "normal", "zero")


def result_model(dataset: xr.Dataset, where: str = "data"):
    """``(model, params)`` of a bioplast result, or ``(None, None)`` for a recording."""
    if schema.ATTR_MODEL not in dataset.attrs:
        return None, None
    overrides = json.loads(dataset.attrs.get(schema.ATTR_MODEL_OVERRIDES, "{}"))
    model = load_model(dataset.attrs[schema.ATTR_MODEL] + "\n", **overrides)
    missing = [name for name in model.params if name not in dataset]
    if missing:
        raise InputError(f"the result lacks the parameters {', '.join(missing)}", file=where)
    extra = [d for d in dataset[next(iter(model.params))].dims
             if d not in model.params[next(iter(model.params))].dims]
    if extra:
        raise InputError(f"the result holds several networks (dims {', '.join(extra)}): "
                         f"select one first (--select {extra[0]}=VALUE, or "
                         f"ds.sel({extra[0]}=...) in Python)", file=where)
    return model, {name: dataset[name].values for name in model.params}


def drive_inputs(kind: str, task: str | None, shape: tuple[int, int, int],
                 rng: np.random.Generator) -> np.ndarray:
    """Random inputs ``(trial, time, input)`` to drive a network for its timescales."""
    if kind == "auto":
        kind = "bits" if task in BIT_TASKS else "normal"
    if kind == "bits":
        return (rng.uniform(size=shape) < 0.5).astype(float)
    if kind == "normal":
        return rng.normal(size=shape)
    return np.zeros(shape)


def analyze(dataset: xr.Dataset, *, do_timescales: bool = True, do_dynamics: bool = True,
            do_geometry: bool = True, variable: str | None = None, steps: int = 10000,
            burn_in: int = 500, trials: int = 10, drive: str = "auto", max_lag: int = 30,
            n_points: int = 64, seed: int = 0, where: str = "data") -> xr.Dataset:
    """Run the chosen analyses on a result or recording; see the module docstring.

    ``variable`` is the activity analysed (default: a result's readout source, or a
    recording's first ``(trial, time, unit)`` variable); ``steps``, ``burn_in``, ``trials``
    and ``drive`` (``auto``, ``bits``, ``normal``, ``zero``) set the timescale run.
    """
    if drive not in DRIVES:
        raise InputError(f"unknown drive '{drive}' (known: {', '.join(DRIVES)})", key="drive")
    model, params = result_model(dataset, where)
    if model is not None and variable is None:
        variable = model.readout.source if model.readout else model.state_names[0]
    rng = np.random.default_rng(seed)
    parts = []
    recorded = None
    if do_geometry or model is None:
        recorded, variable = activity(dataset, variable, where)
        time_step(recorded, where)  # a bad time coordinate is reported with the file
    if do_timescales:
        if model is None:
            traces = recorded
        else:
            from ..simulation import simulate
            inputs = drive_inputs(drive, dataset.attrs.get("task"),
                                  (trials, burn_in + steps, model.n_inputs), rng)
            run = simulate(model, params, inputs, record=[variable], noise=False, seed=seed)
            traces = run[variable].isel({schema.TIME: slice(burn_in, None)})
        parts.append(timescales(traces, max_lag=max_lag))
    if do_geometry:
        parts.append(geometry(recorded))
    if do_dynamics:
        parts.append(_dynamics(dataset, model, params, variable, recorded, n_points, rng,
                               where))
    result = xr.merge(parts, compat="override", combine_attrs="drop_conflicts")
    result.attrs = provenance(**{
        schema.ATTR_KIND: "analysis",
        "analyses": json.dumps([name for name, on in (("timescales", do_timescales),
                                                        ("geometry", do_geometry),
                                                        ("dynamics", do_dynamics)) if on]),
        "variable": str(variable),
        "source_kind": dataset.attrs.get(schema.ATTR_KIND, "recording"),
        "source_file": where,
        schema.ATTR_SEED: int(seed),
        **({schema.ATTR_MODEL: dataset.attrs[schema.ATTR_MODEL],
            schema.ATTR_MODEL_NAME: model.name} if model is not None else {}),
    })
    return result


def _dynamics(dataset, model, params, variable, recorded, n_points, rng, where):
    """Fixed points and mechanism of a result; the mechanism alone for a recording."""
    if model is None:
        return classify_mechanism(recorded)
    states = [name for name in model.state_names if name in dataset]
    if len(states) < len(model.state_names) or schema.INPUTS not in dataset:
        missing = [n for n in model.state_names if n not in dataset]
        raise InputError("the dynamics need the recorded states and inputs of the result "
                         f"(missing: {', '.join(missing or [schema.INPUTS])})", file=where)
    values = np.concatenate([dataset[name].transpose(schema.TRIAL, schema.TIME,
                                                     schema.UNIT).values
                             for name in model.state_names], axis=-1)
    points = find_fixed_points(model, params, starting_points(values, n_points, rng))
    inputs = dataset[schema.INPUTS].transpose(schema.TRIAL, schema.TIME, schema.INPUT).values
    initial = {name: dataset[INITIAL_PREFIX + name].values for name in model.state_names
               if INITIAL_PREFIX + name in dataset} or None
    extended = extended_run(model, params, inputs, initial, variable=variable)
    mechanism = classify_mechanism(extended, trial_steps=inputs.shape[1])
    mechanism = mechanism.rename({schema.TRIAL: "mechanism_trial"})
    return xr.merge([points, mechanism])
