"""Timescales of activity: autocorrelations and exponential fits.

The method of Khajehabdollahi, Zeraati et al. (ICLR 2024; code LevinaLab/rnn_timescale_public,
analysis/timescales/timescales_utils.py): the autocorrelation of each mean-subtracted trace by
FFT (zero-padded, divided by the number of overlapping samples, normalized by its value at lag
0), averaged over trials; fits of one exponential ``a exp(-t/tau)`` and of two
``a [c exp(-t/tau1) + (1-c) exp(-t/tau2)]`` over the first lags; the model with the lower AIC
(``2k + n ln(RSS/n)``) wins, and the timescale is ``tau`` or the larger of ``tau1, tau2``. The
population timescale uses the summed activity. bioplast chooses the two-exponential model
only when its two components are distinct and its AIC is lower by more than 2 (see
`AIC_MARGIN`). Works on any ``(trial, time, unit)`` array or
DataArray with a ``time`` coordinate in seconds: a bioplast result or a recording.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy.optimize import OptimizeWarning, curve_fit

from .. import schema
from ..errors import InputError
from ..limits import array_bytes, check_memory
from .data import activity, drop_nonfinite, time_step

MODELS = ("single", "double")
#: The two-exponential model is chosen only when its AIC is lower by more than AIC_MARGIN
#: and its components are distinct: each weighs at least MIN_WEIGHT, the slow timescale is
#: MIN_RATIO times the fast one and below the fit's bound (otherwise a tiny, slow component
#: fitting the noise of the autocorrelation's tail wins on AIC alone: the errors of an
#: estimated autocorrelation are strongly correlated across lags, which AIC assumes away).
AIC_MARGIN = 2.0
MIN_WEIGHT = 0.1
MIN_RATIO = 2.0


def autocorrelation(traces: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalized autocorrelation of ``traces`` ``(trial, time, unit)`` for lags
    ``0..max_lag`` steps, averaged over trials: ``(unit, lag)``."""
    trials, steps, units = traces.shape
    if max_lag >= steps:
        raise ValueError(f"max_lag = {max_lag} needs more than {steps} steps per trial")
    centered = traces - traces.mean(axis=1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * steps - 1)))  # zero padding: no circular wrap
    spectrum = np.fft.rfft(centered, n=size, axis=1)
    raw = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :max_lag + 1]
    raw = raw / (steps - np.arange(max_lag + 1))[None, :, None]  # overlap count
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = raw / raw[:, :1]
        # mean over the trials where the unit is not silent; silent in all: NaN
        finite = np.isfinite(normalized)
        mean = np.where(finite, normalized, 0.0).sum(axis=0) / finite.sum(axis=0)
    return mean.T


def single_exponential(t, a, tau):
    return a * np.exp(-t / tau)


def double_exponential(t, a, c, tau1, tau2):
    return a * (c * np.exp(-t / tau1) + (1 - c) * np.exp(-t / tau2))


def fit_exponentials(lags: np.ndarray, values: np.ndarray, tau_max: float) -> dict:
    """Fit both models to ``values`` at ``lags`` (same time unit as ``tau_max``) and choose
    by AIC (see `AIC_MARGIN`). Returns ``model``, ``tau`` (the timescale), ``tau_single``, ``tau_fast``,
    ``tau_slow``, ``weight_fast`` (c), ``aic_single``, ``aic_double``."""
    result = {"model": "none", "tau": np.nan, "tau_single": np.nan, "tau_fast": np.nan,
              "tau_slow": np.nan, "weight_fast": np.nan, "aic_single": np.nan,
              "aic_double": np.nan}
    finite = np.isfinite(values)
    lags, values = lags[finite], values[finite]
    n = len(values)
    if n < 5:
        return result
    guess = _decay_guess(lags, values, tau_max)
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore",
                                                divide="ignore"):
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            (a, tau), _ = curve_fit(single_exponential, lags, values, p0=(1.0, guess),
                                    bounds=([0, 1e-12], [1, tau_max]), maxfev=20000)
            rss = float(np.sum((single_exponential(lags, a, tau) - values) ** 2))
            result.update(tau_single=tau, aic_single=_aic(rss, n, 2))
        except (RuntimeError, ValueError):
            pass
        best = None
        for start_fast, start_slow in ((guess / 4, guess * 2), (guess / 10, guess),
                                       (guess / 2, guess * 8)):
            try:
                parameters, _ = curve_fit(
                    double_exponential, lags, values,
                    p0=(1.0, 0.5, max(start_fast, 1e-9), min(start_slow, tau_max)),
                    bounds=([0, 0, 1e-12, 1e-12], [1, 1, tau_max, tau_max]), maxfev=20000)
            except (RuntimeError, ValueError):
                continue
            rss = float(np.sum((double_exponential(lags, *parameters) - values) ** 2))
            if best is None or rss < best[0]:
                best = (rss, parameters)
        if best is not None:
            rss, (a, c, tau1, tau2) = best
            fast, slow, weight = (tau1, tau2, c) if tau1 <= tau2 else (tau2, tau1, 1 - c)
            result.update(tau_fast=fast, tau_slow=slow, weight_fast=weight,
                          aic_double=_aic(rss, n, 4))
    single, double = result["aic_single"], result["aic_double"]
    distinct = np.isfinite(double) and min(result["weight_fast"], 1 - result["weight_fast"]) \
        >= MIN_WEIGHT and result["tau_slow"] < 0.99 * tau_max \
        and result["tau_slow"] >= MIN_RATIO * result["tau_fast"]
    if distinct and (not np.isfinite(single) or double < single - AIC_MARGIN):
        result.update(model="double", tau=result["tau_slow"])
    elif np.isfinite(single):
        result.update(model="single", tau=result["tau_single"])
    return result


def _in_unit(fit: dict, dt: float) -> dict:
    """A fit in steps with its timescales in the unit of ``dt``."""
    return {key: value * dt if key.startswith("tau") else value for key, value in fit.items()}


def _aic(rss: float, n: int, k: int) -> float:
    return 2 * k + n * np.log(max(rss, 1e-300) / n)


def _decay_guess(lags, values, tau_max) -> float:
    """Lag where the autocorrelation first falls below 1/e (a starting value for tau)."""
    below = np.nonzero(values < np.exp(-1) * values[0])[0]
    guess = lags[below[0]] if below.size and lags[below[0]] > 0 else lags[-1]
    return float(np.clip(guess, lags[1] if len(lags) > 1 else 1e-9, tau_max))


def timescales(data, variable: str | None = None, max_lag: int = 30,
               tau_max: float | None = None, where: str = "data") -> xr.Dataset:
    """Single-unit and population timescales of ``data``.

    Parameters
    ----------
    data : xarray.Dataset, DataArray or array
        Activity ``(trial, time, unit)`` (a Dataset: ``variable``, default the first
        ``(trial, time, unit)`` variable); a ``time`` coordinate in seconds gives results in
        seconds, a plain array results in steps.
    max_lag : int
        Lags fitted, in steps (the paper: 30).
    tau_max : float, optional
        Upper bound of the fitted timescales (default: 100 steps, the paper's bound).
    where : str
        The file the data came from, for error messages.

    Trials holding NaN or inf are left out (see `drop_nonfinite`; the ``dropped`` attr
    says which); an `InputError` if none remains or ``max_lag`` is not below the trials'
    length.

    Returns
    -------
    xarray.Dataset
        ``autocorrelation (unit, lag)``, ``population_autocorrelation (lag)``, per unit
        ``tau``, ``tau_single``, ``tau_fast``, ``tau_slow``, ``weight_fast``, ``aic_single``,
        ``aic_double``, ``fit_model`` ("single"/"double"/"none"), and ``network_tau``,
        ``population_tau`` and the population fit, with ``lag`` in seconds (or steps).
    """
    traces, name = activity(data, variable, where)
    dt, unit = time_step(traces, where)
    traces, note, _ = drop_nonfinite(traces, where, purpose="the timescales")
    steps = traces.sizes[schema.TIME]
    if isinstance(max_lag, bool) or not isinstance(max_lag, (int, np.integer)) or max_lag < 1:
        raise InputError(f"must be a positive number of steps, got {max_lag!r}",
                         key="--max-lag")
    if max_lag >= steps:
        raise InputError(f"{max_lag} lags need trials longer than {max_lag} steps; "
                         f"'{name}' has {steps} time point{'s' if steps > 1 else ''} per "
                         f"trial (use --max-lag {steps - 1} or less)" if steps > 1 else
                         f"'{name}' has a single time point per trial: no timescales",
                         file=where, key="--max-lag")
    values = traces.transpose(schema.TRIAL, schema.TIME, schema.UNIT).values
    trials, _, units = values.shape
    padded = 2.0 ** np.ceil(np.log2(2.0 * steps))
    check_memory(array_bytes(trials, padded, units, itemsize=40) + 2 * values.nbytes,
                 f"the autocorrelations of {trials} trials x {steps} steps x {units} units",
                 file=where, key=name)
    tau_max = 100 * dt if tau_max is None else tau_max
    lags = np.arange(max_lag + 1) * dt
    per_unit = autocorrelation(values, max_lag)
    population = autocorrelation(values.sum(axis=2, keepdims=True), max_lag)[0]
    # fitted in steps, where the timescales are of order 1 (in seconds the optimizer's
    # steps are badly scaled: slow to converge), then converted to the unit of dt
    steps_lags = np.arange(max_lag + 1, dtype=float)
    fits = [_in_unit(fit_exponentials(steps_lags, row, tau_max / dt), dt) for row in per_unit]
    population_fit = _in_unit(fit_exponentials(steps_lags, population, tau_max / dt), dt)
    data_vars = {"autocorrelation": ((schema.UNIT, "lag"), per_unit),
                 "population_autocorrelation": (("lag",), population)}
    for key in ("tau", "tau_single", "tau_fast", "tau_slow", "weight_fast", "aic_single",
                "aic_double"):
        data_vars[key] = ((schema.UNIT,), np.array([f[key] for f in fits]),
                          {schema.ATTR_UNITS: unit} if key.startswith("tau") else {})
        data_vars[f"population_{key}"] = ((), population_fit[key],
                                          {schema.ATTR_UNITS: unit}
                                          if key.startswith("tau") else {})
    data_vars["fit_model"] = ((schema.UNIT,), np.array([f["model"] for f in fits]))
    data_vars["population_fit_model"] = ((), population_fit["model"])
    valid = np.array([f["tau"] for f in fits])
    data_vars["network_tau"] = ((), population_fit["tau"], {
        schema.ATTR_UNITS: unit, schema.ATTR_LONG_NAME: "timescale of the summed activity"})
    data_vars["mean_unit_tau"] = ((), float(np.nanmean(valid)) if np.isfinite(valid).any()
                                  else np.nan, {schema.ATTR_UNITS: unit})
    coords = {"lag": ("lag", lags, {schema.ATTR_UNITS: unit})}
    if schema.UNIT in traces.coords:
        coords[schema.UNIT] = traces[schema.UNIT].values
    return xr.Dataset(data_vars, coords=coords, attrs={
        "analysis": "timescales", "variable": name, "max_lag_steps": int(max_lag),
        "method": "FFT autocorrelation, 1- and 2-exponential fits, AIC (Khajehabdollahi, "
                  "Zeraati et al. 2024)", **({"dropped": note} if note else {})})
