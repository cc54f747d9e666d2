"""`simulate`: one batch of trials of a model on a backend, returned as an xarray Dataset."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from . import results
from .backends import get_backend
from .errors import InputError
from .limits import array_bytes, check_memory
from .model import Model, load_model


def check_inputs(model: Model, inputs, where: str = "inputs") -> np.ndarray:
    """``inputs`` as a float array shaped ``(trial, time, input)`` or
    ``(member, trial, time, input)``, checked against the model."""
    if hasattr(inputs, "detach"):
        inputs = inputs.detach().cpu().numpy()
    try:
        array = np.array(inputs, dtype=float)  # a copy: callers may pass read-only views
    except (TypeError, ValueError) as error:
        raise InputError(f"not a numeric array ({error})", file=where) from None
    if np.iscomplexobj(inputs):
        raise InputError("inputs are complex numbers; they must be real", file=where)
    if array.ndim not in (3, 4):
        raise InputError(f"shape {array.shape}: expected (trial, time, input) or "
                         "(member, trial, time, input)", file=where)
    if array.shape[-1] != model.n_inputs:
        raise InputError(f"{array.shape[-1]} input channels, model '{model.name}' has "
                         f"n_inputs = {model.n_inputs}", file=where)
    if array.shape[-2] < 1 or array.shape[-3] < 1:
        raise InputError(f"shape {array.shape}: need at least one trial and one step",
                         file=where)
    if not np.all(np.isfinite(array)):
        raise InputError("inputs hold NaN or inf", file=where)
    return array


def check_simulation_size(model: Model, n_trials: int, n_steps: int, *,
                          n_members: int | None = None, record: Sequence[str] | None = None,
                          where: str | None = None,
                          key: str = "trials x steps x n_units") -> None:
    """InputError, before anything is allocated, if the inputs and recorded variables of a
    simulation of this size would not fit in the memory available now."""
    n_recorded = len(default_record(model) if record is None else record)
    lead = (n_members or 1, n_trials, n_steps)
    needed = array_bytes(*lead, model.n_inputs) + array_bytes(*lead, model.n_outputs) \
        + array_bytes(*lead, model.n_units) * n_recorded
    check_memory(needed, f"a simulation of {n_members or 1} x {n_trials} trials x {n_steps} "
                         f"steps x {model.n_units} units ({n_recorded} recorded variables)",
                 file=where or model.file, key=key)


def default_record(model: Model) -> list[str]:
    """States and plain subexpressions (not noise-like ``(constant over dt)`` ones)."""
    return [*model.state_names, *model.subexpressions]


def simulate(model: Model | str, params: Mapping[str, Any] | None = None, inputs=None,
             backend: str = "torch", *, initial_state: Mapping[str, Any] | None = None,
             record: Sequence[str] | None = None, noise: bool = True, seed: int = 0,
             command: str | None = None, progress: bool = False, **options) -> xr.Dataset:
    """Simulate a batch of trials and return the result as an `xarray.Dataset`.

    Parameters
    ----------
    model : Model or str
        A `Model` or anything `load_model` accepts.
    params : mapping of str to array, optional
        Parameter arrays (see ``model.params``), optionally with a leading member axis
        (independent networks simulated together). Default: ``model.init_params(seed)``.
    inputs : array
        ``(trial, time, input)``, or ``(member, trial, time, input)``; dimensionless.
    backend : str
        ``"torch"`` or ``"brian2"``.
    initial_state : mapping, optional
        Per state ``(trial, unit)`` or ``(member, trial, unit)``; default from the model's
        ``initial`` specs, drawn with ``seed``.
    record : sequence of str, optional
        Variables to record (default: states and subexpressions).
    noise : bool
        ``False`` replaces ``rand()``/``randn()`` by their means (0.5, 0) and drops
        white noise ``xi``.
    seed : int
        Seeds the initial state (when drawn), default parameters and noise.
    command : str, optional
        The command line that asked for this, stored in the attrs.
    progress : bool
        Report progress on stderr.
    **options
        Backend options: ``device``/``dtype`` for torch, ``target`` for brian2.

    Returns
    -------
    xarray.Dataset
        Recorded variables ``([member,] trial, time, unit)``, ``inputs``, ``outputs``,
        parameters, initial states, and provenance attrs (`bioplast.results`).
    """
    model = model if isinstance(model, Model) else load_model(model)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}", key="seed")
    if inputs is None:
        raise InputError("inputs are required, shaped (trial, time, input)")
    inputs = check_inputs(model, inputs)
    if params is None:
        params = model.init_params(seed)
    n_members = model.check_params(params)
    if inputs.ndim == 4 and inputs.shape[0] != (n_members or 1):
        raise InputError(f"inputs have {inputs.shape[0]} members, parameters "
                         f"{n_members or 'none'}", file="inputs")
    record = default_record(model) if record is None else list(record)
    unknown = [name for name in record if name not in model.recordable]
    if unknown:
        raise InputError(f"cannot record {', '.join(unknown)} (recordable: "
                         f"{', '.join(model.recordable)})", key="record")
    check_simulation_size(model, inputs.shape[-3], inputs.shape[-2], n_members=n_members,
                          record=record)
    engine = get_backend(backend, **options)
    engine.require(members=n_members is not None)
    n_trials = inputs.shape[-3]
    state = _initial_state(model, initial_state, n_trials, n_members, seed)
    trajectory = engine.simulate(model, params, inputs, state, record, noise=noise, seed=seed,
                                 progress=progress)
    return results.simulation_dataset(
        model, params, inputs, state, trajectory, members=n_members is not None,
        backend=engine.name, backend_options=engine.settings(), seed=seed, noise=noise,
        command=command)


def _initial_state(model: Model, given, n_trials: int, n_members: int | None, seed: int):
    """Initial states shaped ``(member, trial, unit)`` (member axis of length 1 if none)."""
    if given is None:
        state = model.initial_state(n_trials, seed, n_members)
    else:
        missing = [name for name in model.state_names if name not in given]
        unknown = [name for name in given if name not in model.state_names]
        if missing or unknown:
            raise InputError(f"initial_state needs exactly the states "
                             f"{', '.join(model.state_names)}", key="initial_state")
        state = {}
        for name in model.state_names:
            value = given[name]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            value = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(value)):
                raise InputError("holds NaN or inf", key=f"initial_state.{name}")
            if value.shape[-2:] != (n_trials, model.n_units) or value.ndim not in (2, 3):
                raise InputError(f"shape {value.shape}, expected ({n_trials}, "
                                 f"{model.n_units}) or (member, {n_trials}, {model.n_units})",
                                 key=f"initial_state.{name}")
            state[name] = value
    lead = (n_members or 1, n_trials, model.n_units)
    return {name: np.broadcast_to(value, lead).copy() for name, value in state.items()}
