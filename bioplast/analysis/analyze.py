"""`analyze`: timescales, dynamics and geometry of a bioplast result or of a recording.

For a bioplast result (a simulation or training file, which stores its model text and
parameters) the network is driven again where an analysis needs it: timescales from a long
run after a burn-in, by default with inputs of the task the network was trained on, with its
trials' statistics (`bioplast.tasks.Task.drive`; Khajehabdollahi et al. drive their
N-parity networks with bits of one probability p ~ U(0, 1) per trial, as in training),
fixed and slow points from states sampled from the recorded trials, and the limit
cycle / slow point classification from the recorded test trials followed by zero input. A
recording (any netCDF file with ``(trial, time, unit)`` activity) gets the analyses that
need no model: timescales and geometry of its activity, and the classification of its
trials as they are. On request a training result gets its robustness
(`bioplast.analysis.robustness`): accuracy as units are silenced, after weight noise and
the updates to recover, and at N beyond the trained one.

Bad input is an `InputError` naming the file (``where``) and the variable or flag: several
networks in one file (choose one with ``--select``), NaN or inf parameters where the network
must run, arguments out of range (``--max-lag`` not below the trials' or the driven run's
length, a driven run too large for the memory available). Trials whose activity holds NaN
or inf are left out (see `bioplast.analysis.data.drop_nonfinite`); the result's ``dropped``
attr says what was left out, one sentence per variable, joined by ``"; "``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError
from ..limits import array_bytes, check_memory
from ..results import (INITIAL_PREFIX, provenance, recorded_trials, result_model,
                       stored_task, trial_initial_state)
from ..results_header import dtype_text
from .data import (AXES, activity, check_one_network, describe_nonfinite, drop_nonfinite,
                   dropped_note, time_step)
from .dynamics import (STATES, UNDETERMINED, classify_mechanism, extended_run, find_fixed_points,
                       starting_points)
from .geometry import geometry
from .robustness import (RobustnessSettings, ablation, generalization, perturbation,
                         require_n, trained_network)
from .timescales import timescales

DRIVES = ("auto", "task", "bits", "normal", "zero")


def check_parameters(model, params: dict, where: str) -> None:
    """InputError naming the parameter if one is not real, holds NaN or inf (a diverged
    training run), or has the wrong shape: the analyses that run the network need them."""
    for name, value in params.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf":
            raise InputError(f"holds {dtype_text(value.dtype)}; parameters must be real "
                             "numbers", file=where, key=name)
        bad = ~np.isfinite(value.astype(float))
        if bad.any():
            raise InputError(f"holds {bad.sum()} NaN or inf of its {bad.size} values (did the "
                             "training diverge?): the timescales and dynamics run the "
                             "network and need finite parameters (--geometry alone "
                             "analyses the recorded activity)", file=where, key=name)
    model.check_params(params, where)


#: the defaults of the driven run (to say which flag asks too much)
_RUN_DEFAULTS = {"--trials": 10, "--steps": 10000, "--burn-in": 500}


def check_driven_run(model, trials, steps, burn_in, max_lag, where: str) -> None:
    """InputError naming the flag if the driven run's settings are out of range or would
    need more memory than is available (checked before anything is allocated)."""
    for flag, value, minimum in (("--trials", trials, 1), ("--steps", steps, 1),
                                 ("--burn-in", burn_in, 0), ("--max-lag", max_lag, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise InputError(f"must be an integer >= {minimum}, got {value!r}", key=flag)
    if max_lag >= steps:
        raise InputError(f"{max_lag} lags need a driven run longer than {max_lag} steps, but "
                         f"--steps is {steps} (raise --steps or lower --max-lag)",
                         file=where, key="--max-lag")
    length = float(burn_in) + float(steps)
    padded = 2.0 ** math.ceil(math.log2(2 * float(steps)))  # the FFT's zero padding
    needed = (array_bytes(trials, length, 2 * model.n_inputs + 2 * model.n_units
                          + model.n_outputs)
              + array_bytes(trials, padded, model.n_units, itemsize=24)
              + array_bytes(trials, steps, model.n_units, itemsize=16))
    flag = max(_RUN_DEFAULTS, key=lambda f: {"--trials": trials, "--steps": steps,
                                              "--burn-in": burn_in}[f] / _RUN_DEFAULTS[f])
    check_memory(needed, f"a driven run of {trials} trials x ({burn_in} + {steps}) steps x "
                         f"{model.n_units} units (lower {flag})", file=where, key=flag)


def drive_inputs(kind: str, task, shape: tuple[int, int, int],
                 rng: np.random.Generator) -> np.ndarray:
    """Inputs ``(trial, time, input)`` to drive a network for its timescales: ``task``:
    those of ``task`` (the `bioplast.tasks.Task` the network was trained on, or None),
    `Task.drive`; ``bits``: Bernoulli(0.5); ``normal``: N(0, 1); ``zero``; ``auto``:
    ``task`` where there is a task, else ``normal``."""
    if kind == "auto":
        kind = "normal" if task is None else "task"
    if kind == "task":
        if task is None:
            raise InputError("needs a training result (it draws the inputs of the task the "
                             "network was trained on); use normal, bits or zero",
                             key="--drive")
        return task.drive(rng, shape[0], shape[1])
    if kind == "bits":
        return (rng.uniform(size=shape) < 0.5).astype(float)
    if kind == "normal":
        return rng.normal(size=shape)
    return np.zeros(shape)


def analyze(dataset: xr.Dataset, *, do_timescales: bool = True, do_dynamics: bool = True,
            do_geometry: bool = True, variable: str | None = None, steps: int = 10000,
            burn_in: int = 500, trials: int = 10, drive: str = "auto", max_lag: int = 30,
            n_points: int = 64, seed: int = 0, where: str = "data",
            do_ablation: bool = False, do_perturbation: bool = False,
            do_generalization: bool = False,
            robustness: RobustnessSettings = RobustnessSettings(),
            progress: bool = False) -> xr.Dataset:
    """Run the chosen analyses on a result or recording; see the module docstring.

    ``variable`` is the activity analysed (default: a result's readout source, or a
    recording's first ``(trial, time, unit)`` variable); ``steps``, ``burn_in``, ``trials``
    and ``drive`` (`drive_inputs`: ``auto``, ``task``, ``bits``, ``normal``, ``zero``) set
    the timescale run. ``do_ablation``, ``do_perturbation`` and ``do_generalization`` (a
    training result only; `bioplast.analysis.robustness`, with ``robustness`` settings) run
    the network again on its task (``robustness.ablation_by == "activity"`` runs the
    timescales too: they rank the units); ``progress`` shows their progress bars.
    """
    if drive not in DRIVES:
        raise InputError(f"unknown drive '{drive}' (known: {', '.join(DRIVES)})",
                         key="--drive")
    check_one_network(dataset, where)
    model, params = result_model(dataset, where)
    robust = {flag: on for flag, on in (("--ablation", do_ablation),
                                        ("--perturbation", do_perturbation),
                                        ("--generalization", do_generalization)) if on}
    network = None
    if do_ablation and robustness.ablation_by == "activity":
        do_timescales = True  # the units are ranked by their fitted timescales
    if robust:
        network = trained_network(dataset, params or {}, where, next(iter(robust)))
        check_parameters(model, params, where)
        if do_generalization:
            require_n(network)
    if model is not None and variable is None:
        variable = model.readout.source if model.readout else model.state_names[0]
    if model is not None and (do_timescales or do_dynamics):
        check_parameters(model, params, where)
        if variable not in model.recordable and not (variable == STATES and not do_timescales):
            raise InputError(f"the model cannot record '{variable}' (recordable: "
                             f"{', '.join(model.recordable)})", file=where, key="--variable")
    if model is not None and do_timescales:
        check_driven_run(model, trials, steps, burn_in, max_lag, where)
    rng = np.random.default_rng(seed)
    notes: dict[str, list[str]] = {}  # what was dropped -> the analyses it was dropped for
    parts = []
    recorded = None
    fitted = None  # the units' timescales, when they rank the units for the ablation
    if do_geometry or model is None:
        recorded, variable = activity(dataset, variable, where)
        time_step(recorded, where)  # a bad time coordinate is reported with the file
        uses = [name for name, on in (("timescales", do_timescales and model is None),
                                      ("geometry", do_geometry),
                                      ("mechanism", do_dynamics and model is None)) if on]
        recorded, note, _ = drop_nonfinite(recorded, where, purpose=" and ".join(uses))
        _note(notes, note, uses)
    if do_timescales:
        if model is None:
            traces = recorded
        else:
            from ..simulation import simulate
            task = stored_task(dataset, model, where) \
                if drive in ("auto", "task") and schema.ATTR_PROTOCOL in dataset.attrs else None
            inputs = drive_inputs(drive, task, (trials, burn_in + steps, model.n_inputs), rng)
            run = simulate(model, params, inputs, record=[variable], noise=False, seed=seed)
            traces = run[variable].isel({schema.TIME: slice(burn_in, None)})
            traces, note, _ = drop_nonfinite(traces, where, purpose="the timescales",
                                             label=f"the driven run's {variable}")
            _note(notes, note, ["timescales"])
        parts.append(timescales(traces, max_lag=max_lag, where=where))
        fitted = parts[-1]["tau"].values
    if do_geometry:
        parts.append(geometry(recorded, where=where))
    if do_dynamics:
        parts.append(_dynamics(dataset, model, params, variable, recorded, n_points, rng,
                               where, notes))
    if do_ablation:
        parts.append(ablation(network, robustness, seed, progress, fitted))
    if do_perturbation:
        parts.append(perturbation(network, robustness, seed, progress))
    if do_generalization:
        parts.append(generalization(network, robustness, progress))
    for part in parts:
        part.attrs.pop("dropped", None)
    result = xr.merge(parts, compat="override", combine_attrs="drop_conflicts")
    result.attrs = provenance(**{
        schema.ATTR_KIND: "analysis",
        "analyses": json.dumps([name for name, on in (("timescales", do_timescales),
                                                        ("geometry", do_geometry),
                                                        ("dynamics", do_dynamics),
                                                        ("ablation", do_ablation),
                                                        ("perturbation", do_perturbation),
                                                        ("generalization", do_generalization))
                                if on]),
        "variable": str(variable),
        "source_kind": dataset.attrs.get(schema.ATTR_KIND, "recording"),
        "source_file": where,
        **({"dropped": "; ".join(f"{note} (for {', '.join(uses)})"
                                 for note, uses in notes.items())} if notes else {}),
        schema.ATTR_SEED: int(seed),
        **({schema.ATTR_MODEL: dataset.attrs[schema.ATTR_MODEL],
            schema.ATTR_MODEL_NAME: model.name} if model is not None else {}),
    })
    return result


def _note(notes: dict, note: str | None, uses) -> None:
    if note:
        notes.setdefault(note, []).extend(use for use in uses if use not in notes[note])


def _dynamics(dataset, model, params, variable, recorded, n_points, rng, where, notes):
    """Fixed points and mechanism of a result; the mechanism alone for a recording."""
    if model is None:
        return classify_mechanism(recorded, where=where)
    values, inputs = recorded_trials(dataset, model, where)
    names = ", ".join(model.state_names)
    bad = ~np.isfinite(values).all(axis=(1, 2))
    if bad.all():
        raise InputError(f"every trial holds NaN or inf ({describe_nonfinite(values)}): no "
                         "state to start the fixed-point search from", file=where, key=names)
    if bad.any():
        _note(notes, dropped_note(where, names, values, bad), ["fixed points"])
    points = find_fixed_points(model, params, starting_points(values[~bad], n_points, rng))
    initial = trial_initial_state(dataset, model, inputs.shape[0], where)
    arrays = {schema.INPUTS: inputs, **{INITIAL_PREFIX + name: value[:, None, :]
                                        for name, value in (initial or {}).items()}}
    usable = np.ones(inputs.shape[0], dtype=bool)
    for name, value in arrays.items():
        axes = (AXES[0], AXES[1], ("input", "inputs")) if name == schema.INPUTS else \
            (AXES[0], None, AXES[2])
        bad = ~np.isfinite(value).all(axis=(1, 2))
        if bad.all():
            raise InputError(f"every trial holds NaN or inf ({describe_nonfinite(value, axes)}"
                             "): the trials cannot be run again for the mechanism",
                             file=where, key=name)
        if bad.any():
            _note(notes, dropped_note(where, name, value, bad, axes=axes), ["mechanism"])
        usable &= ~bad
    if not usable.any():
        raise InputError("every trial's inputs or initial states hold NaN or inf: the trials "
                         "cannot be run again for the mechanism", file=where,
                         key=", ".join(arrays))
    if not usable.all():
        inputs = inputs[usable]
        initial = {name: value[usable] for name, value in initial.items()} if initial \
            else None
    extended = extended_run(model, params, inputs, initial, variable=variable)
    mechanism = classify_mechanism(extended, trial_steps=inputs.shape[1], where=where)
    diverged = mechanism["mechanism"].values == UNDETERMINED
    if diverged.any():
        _note(notes, f"{where}: the re-run of {diverged.sum()} of {len(diverged)} trials "
                     "(followed by zero input) diverged to NaN or inf: their mechanism is "
                     f"'{UNDETERMINED}'", ["mechanism"])
    mechanism = mechanism.rename({schema.TRIAL: "mechanism_trial"}).assign_coords(
        mechanism_trial=np.flatnonzero(usable))
    return xr.merge([points, mechanism])
