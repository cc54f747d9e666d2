"""Dynamics of trained networks: fixed and slow points, and limit cycles vs slow points.

Fixed and slow points (Sussillo & Barak 2013, Neural Comput 25:626) of the one-step map
``x -> F(x)`` of a model at a constant input: minimize ``q(x) = |F(x) - x|^2 / 2`` from many
initial states (sampled from trajectories, optionally jittered) with L-BFGS; the minima with
``q`` below ``fixed_tolerance`` are fixed points, the others slow points. The eigenvalues of
the Jacobian ``dF/dx`` give stability (the map is stable where all ``|lambda| < 1``). The
state vector concatenates the model's state variables, unit by unit within each.

Limit cycle vs slow-point manifold (Kurtkaya, Dinc et al., ICML 2025; code
fatihdinc/dynamical-phases-stm, sort_data.py): run each trial and then ``extension`` times
its length with zero input; take the top two principal components of that trial's activity;
form the time-by-time correlation matrix of the two-dimensional trajectory (``corrcoef`` of its
rows); the share of the 2-D FFT power within radius 3 of the zero frequency is the ``ratio``:
below 0.5 a limit cycle, otherwise a slow-point manifold. The period of a limit cycle is
read from the dominant frequency of the first component after the trial.

Trials whose activity holds NaN or inf (a run that diverged) are classified
``undetermined`` with a NaN ratio; searches for fixed points that end at NaN or inf are
left out.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import xarray as xr

from .. import schema
from ..compile_torch import TorchStepper
from ..errors import InputError
from ..limits import array_bytes, check_memory
from ..model import Model
from .data import activity, time_step

POINT, MODE = "point", "mode"
LIMIT_CYCLE, SLOW_POINT = "limit_cycle", "slow_point_manifold"
UNDETERMINED = "undetermined"


def _state_dict(model: Model, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(points, S*N)`` -> ``{state: (1, points, N)}``."""
    n = model.n_units
    return {name: vector[None, :, index * n:(index + 1) * n]
            for index, name in enumerate(model.state_names)}


def step_map(model: Model, params, inputs: np.ndarray | None = None,
             dtype=torch.float64):
    """``F``: states ``(points, S*N)`` -> states after one step at a constant input
    ``(n_inputs,)`` (default zero), noise off, as a differentiable torch function."""
    stepper = TorchStepper(model, dtype, "cpu", noise=False)
    tensors = {k: torch.as_tensor(np.asarray(v)[None], dtype=dtype) for k, v in params.items()}
    bound = stepper.bind(tensors)
    constant = torch.as_tensor(np.zeros(model.n_inputs) if inputs is None else inputs,
                               dtype=dtype)

    def function(vector: torch.Tensor) -> torch.Tensor:
        states = _state_dict(model, vector)
        u = constant.expand(vector.shape[0], model.n_inputs)
        env = stepper.environment(states, u, bound, 0.0)
        new = stepper.advance(env)
        return torch.cat([new[name][0] for name in model.state_names], dim=-1)

    return function


def starting_points(states: np.ndarray, n_points: int, rng: np.random.Generator) -> np.ndarray:
    """``(points, S*N)`` starting points for `find_fixed_points`: visited states
    ``(..., S*N)`` drawn without replacement, jittered by 1% of their spread."""
    samples = states.reshape(-1, states.shape[-1])
    samples = samples[np.isfinite(samples).all(axis=1)]  # NaN or inf: not a state to start at
    if not len(samples):
        raise InputError("no finite state to start the fixed-point search from")
    chosen = samples[rng.choice(len(samples), size=min(n_points, len(samples)),
                                replace=False)]
    scale = float(np.std(samples)) or 1.0
    return chosen + 0.01 * scale * rng.normal(size=chosen.shape)


def find_fixed_points(model: Model, params, initial: np.ndarray,
                      inputs: np.ndarray | None = None, max_iterations: int = 500,
                      fixed_tolerance: float = 1e-12, merge_distance: float = 1e-4
                      ) -> xr.Dataset:
    """Minima of ``q`` from each row of ``initial`` ``(points, S*N)``; see the module
    docstring. Returns ``point_<state> (point, unit)``, ``q``, ``kind`` ("fixed"/"slow"),
    ``eigenvalue_real``/``eigenvalue_imag (point, mode)``, ``max_abs_eigenvalue`` and
    ``stable`` (int8), points sorted by ``q`` and merged when closer than
    ``merge_distance`` (relative to the typical state size)."""
    function = step_map(model, params, inputs)
    points = torch.as_tensor(np.asarray(initial, dtype=float)).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([points], lr=1.0, max_iter=max_iterations,
                                  tolerance_grad=1e-14, tolerance_change=1e-16,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * ((function(points) - points) ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        final = points.detach()
        speed = 0.5 * ((function(final) - final) ** 2).sum(dim=1).numpy()
    final = final.numpy()
    converged = np.isfinite(speed) & np.isfinite(final).all(axis=1)  # diverged searches: out
    scale = max(float(np.median(np.linalg.norm(final[converged], axis=1)))
                if converged.any() else 0.0, 1e-12)
    kept: list[int] = []
    eigenvalues = []
    for index in np.argsort(speed):
        if not converged[index] or not all(
                np.linalg.norm(final[index] - final[k]) > merge_distance * scale for k in kept):
            continue
        jacobian = torch.autograd.functional.jacobian(
            lambda v: function(v[None])[0], torch.as_tensor(final[index])).numpy()
        if not np.isfinite(jacobian).all():
            continue
        try:
            eigenvalues.append(np.linalg.eigvals(jacobian))
        except np.linalg.LinAlgError:
            continue
        kept.append(int(index))
    eigenvalues = np.array(eigenvalues, dtype=complex).reshape(len(kept), final.shape[1])
    order = np.argsort(-np.abs(eigenvalues), axis=1)
    eigenvalues = np.take_along_axis(eigenvalues, order, axis=1)
    largest = np.abs(eigenvalues).max(axis=1) if eigenvalues.size else np.zeros(0)
    data = {f"point_{name}": ((POINT, schema.UNIT), final[kept][:, i * model.n_units:
                                                               (i + 1) * model.n_units],
                              {schema.ATTR_UNITS: model.unit_of(name)})
            for i, name in enumerate(model.state_names)}
    data.update({
        "q": ((POINT,), speed[kept], {schema.ATTR_LONG_NAME: "|F(x) - x|^2 / 2"}),
        "kind": ((POINT,), np.array(["fixed" if speed[k] < fixed_tolerance else "slow"
                                      for k in kept], dtype=str)),
        "eigenvalue_real": ((POINT, MODE), eigenvalues.real),
        "eigenvalue_imag": ((POINT, MODE), eigenvalues.imag),
        "max_abs_eigenvalue": ((POINT,), largest),
        "stable": ((POINT,), (largest < 1).astype(np.int8)),
    })
    return xr.Dataset(data, coords={POINT: np.arange(len(kept))}, attrs={
        "analysis": "fixed_points", "method": "minimize |F(x)-x|^2/2 with L-BFGS (Sussillo & "
                                              "Barak 2013); F: one step of the model"})


STATES = "states"


def extended_run(model: Model, params, inputs: np.ndarray, initial_state, extension: int = 9,
                 variable: str | None = None) -> xr.DataArray:
    """Activity ``(trial, time, unit)`` of each trial followed by ``extension`` times its
    length with zero input (noise off), of ``variable`` (default: the readout's source;
    ``"states"``: every state variable, side by side along ``unit``)."""
    from ..simulation import simulate
    trials, steps, n_inputs = inputs.shape
    padded = np.zeros((trials, steps * (1 + extension), n_inputs))
    padded[:, :steps] = inputs
    name = variable or (model.readout.source if model.readout else model.state_names[0])
    names = list(model.state_names) if name == STATES else [name]
    ds = simulate(model, params, padded, initial_state=initial_state, record=names,
                  noise=False)
    if name != STATES:
        return ds[name]
    joined = xr.concat([ds[n].drop_vars(schema.UNIT) for n in names], dim=schema.UNIT)
    return joined.rename(STATES)


def mechanism_ratio(trajectory: np.ndarray, radius: float = 3.0) -> float:
    """Share of the 2-D FFT power of the time-by-time correlation matrix of the top two
    principal components of ``trajectory`` ``(time, unit)`` within ``radius`` of the zero
    frequency (Kurtkaya et al.)."""
    if trajectory.shape[0] < 2 or not np.isfinite(trajectory).all():
        return float("nan")
    centered = trajectory - trajectory.mean(axis=0)
    try:
        _, _, components = np.linalg.svd(centered, full_matrices=False)
    except np.linalg.LinAlgError:
        return float("nan")
    low = centered @ components[:2].T
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one unit: no correlation
        correlation = np.nan_to_num(np.atleast_2d(np.corrcoef(low)))
    magnitude = np.abs(np.fft.fftshift(np.fft.fft2(correlation)))
    rows, columns = np.ogrid[:magnitude.shape[0], :magnitude.shape[1]]
    center = (magnitude.shape[0] // 2, magnitude.shape[1] // 2)
    near = (rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= radius ** 2
    total = float(np.sum(magnitude ** 2))
    return float(np.sum(magnitude[near] ** 2) / total) if total > 0 else float("nan")


def dominant_period(signal: np.ndarray, dt: float) -> float:
    """Period of the strongest oscillation of ``signal`` (FFT peak, refined by a parabola
    through the peak's log power), in the unit of ``dt``; NaN without an oscillation."""
    signal = signal - signal.mean()
    if len(signal) < 3 or not np.any(signal) or not np.isfinite(signal).all():
        return float("nan")
    size = 8 * len(signal)
    power = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n=size)) ** 2
    peak = int(np.argmax(power[1:]) + 1)
    if peak >= len(power) - 1:
        return float("nan")
    left, middle, right = np.log(power[peak - 1:peak + 2] + 1e-300)
    curvature = left - 2 * middle + right
    offset = 0.5 * (left - right) / curvature if curvature != 0 else 0.0
    frequency = (peak + offset) / (size * dt)
    return float(1.0 / frequency) if frequency > 0 else float("nan")


def classify_mechanism(data, variable: str | None = None, trial_steps: int | None = None,
                       threshold: float = 0.5, where: str = "data") -> xr.Dataset:
    """Limit cycle or slow-point manifold, per trial, from activity ``(trial, time,
    unit)`` that continues after the trial with zero input (`extended_run`, or a
    recording). ``trial_steps``: where the trial ends (the period is measured after it;
    default: a tenth of the time, as with ``extension = 9``)."""
    traces, name = activity(data, variable, where)
    dt, unit = time_step(traces, where)
    values = traces.values
    steps = values.shape[1]
    check_memory(array_bytes(steps, steps, itemsize=48),
                 f"the mechanism of trials of {steps} time points (a {steps} x {steps} "
                 "correlation matrix per trial; for a recording, skip it: --timescales "
                 "--geometry)", file=where, key="--dynamics")
    start = trial_steps if trial_steps is not None else values.shape[1] // 10
    ratios = np.array([mechanism_ratio(trial) for trial in values])
    diverged = ~np.isfinite(values).all(axis=(1, 2))
    kinds = np.where(diverged, UNDETERMINED,
                     np.where(ratios < threshold, LIMIT_CYCLE, SLOW_POINT))
    periods = []
    for trial, kind in zip(values, kinds):
        after = trial[start:] - trial[start:].mean(axis=0) if len(trial) > start + 2 else None
        if kind != LIMIT_CYCLE or after is None:
            periods.append(np.nan)
            continue
        try:
            _, _, components = np.linalg.svd(after, full_matrices=False)
        except np.linalg.LinAlgError:
            periods.append(np.nan)
            continue
        periods.append(dominant_period(after @ components[0], dt))
    return xr.Dataset({
        "mechanism_ratio": ((schema.TRIAL,), ratios, {
            schema.ATTR_LONG_NAME: "share of 2-D FFT power near DC (< threshold: limit cycle)"}),
        "mechanism": ((schema.TRIAL,), kinds.astype(str)),
        "period": ((schema.TRIAL,), np.array(periods), {schema.ATTR_UNITS: unit}),
    }, attrs={"analysis": "mechanism", "variable": name, "threshold": threshold,
              "method": "Kurtkaya, Dinc et al. 2025 (sort_data.py)"})
