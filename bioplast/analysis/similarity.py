"""Similarity of population activity between a model and a recording (or any two datasets).

Both are reduced to condition-averaged responses matched by coordinate, not by position:
trials are grouped by a condition label (a coordinate or variable along ``trial``), labels
present in both are kept, and the model's activity is interpolated onto the recording's
time points. The matrices ``X (condition*time, model unit)`` and ``Y (condition*time,
recorded unit)`` are compared with

- ``procrustes``: the angular orthogonal-Procrustes shape distance of Williams, Kunz,
  Kornblith & Linderman (2021), ``arccos(||X^T Y||_* / (||X|| ||Y||))`` for centered X, Y
  (a metric, in [0, pi/2]; X and Y may have different numbers of units);
- ``cca``: the angular CCA distance of the same paper, ``arccos(mean canonical
  correlation)`` after reducing both to their top principal components: as many as explain
  95% of the variance of each (the smaller count), at most ``cca_components`` (canonical
  correlations of noise dimensions are low and would dominate the mean);
- ``cka``: linear centered kernel alignment (Kornblith et al. 2019), a similarity in [0, 1];
- ``rsa``: representational similarity (Kriegeskorte et al. 2008): correlation-distance
  RDMs of the condition-time patterns compared by Spearman's rank correlation.

Cross-validation over trials: the trials of each condition are split into ``folds``; the
alignment (Procrustes rotation, CCA) is fit on the other folds' averages and scored on the
held-out fold (CKA and RSA, which fit nothing, are scored on held-out averages too). The
shuffle baseline relabels the recording's conditions at random ``shuffles`` times.

Trials holding NaN or inf, and trials without a condition label, are left out (the result's
``dropped`` attr says which); an `InputError` names the file and variable when fewer than
two conditions remain in common, when an activity is constant (nothing to compare), when a
metric cannot apply (RSA needs two units), and names the flag when ``folds`` exceeds a
condition's trials or ``shuffles`` asks for too much work (`MAX_SHUFFLES`, `MAX_WORK`).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from .. import schema
from ..errors import InputError
from ..limits import array_bytes, check_memory
from .data import activity, check_one_network, drop_nonfinite

METRICS = ("procrustes", "cca", "cka", "rsa")
DISTANCES = ("procrustes", "cca")  # the others are similarities
#: more shuffles than this resolve p-values below 1e-5: nothing to learn, only time to spend
MAX_SHUFFLES = 100_000
#: a bound on the shuffle baseline's work, in (rough) floating-point operations: ~minutes
MAX_WORK = 1e13


@contextlib.contextmanager
def _quiet():
    """Degenerate folds or shuffles (a constant average, a singular matrix) give NaN, not
    warnings."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _safe(function, *args) -> float:
    with _quiet():
        try:
            return float(function(*args))
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError):
            return float("nan")


def metric_work(metric: str, rows: int, p: int, q: int) -> float:
    """Rough floating-point operations of one evaluation of ``metric`` on ``(rows, p)`` and
    ``(rows, q)`` matrices."""
    rows, p, q = float(rows), float(p), float(q)
    if metric == "rsa":
        return rows * rows * (p + q + 2 * np.log2(max(rows, 2.0)))
    return rows * (p + q) ** 2 + (p + q) ** 3


def _center(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0)


def _clip(value: float) -> float:
    return float(np.clip(value, -1.0, 1.0))


def procrustes_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Angular Procrustes shape distance of ``x (sample, p)`` and ``y (sample, q)``."""
    x, y = _center(x), _center(y)
    norms = np.linalg.norm(x) * np.linalg.norm(y)
    if norms == 0:
        return float("nan")
    return float(np.arccos(_clip(np.linalg.norm(x.T @ y, ord="nuc") / norms)))


def procrustes_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The orthogonal map ``Q (p, q)`` maximizing ``tr(Q^T X^T Y)`` (X, Y centered)."""
    u, _, vt = np.linalg.svd(_center(x).T @ _center(y), full_matrices=False)
    return u @ vt


def _reduce(x: np.ndarray, components: int) -> np.ndarray:
    x = _center(x)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:components].T


def cca_dimension(x: np.ndarray, y: np.ndarray, cap: int, share: float = 0.95) -> int:
    """Principal components kept for CCA: enough for ``share`` of the variance of both."""
    def needed(values):
        variance = np.linalg.svd(_center(values), compute_uv=False) ** 2
        return int(np.searchsorted(np.cumsum(variance) / variance.sum(), share) + 1)
    return max(1, min(needed(x), needed(y), cap, x.shape[0] - 1))


def canonical_correlations(x: np.ndarray, y: np.ndarray, components: int) -> np.ndarray:
    """Canonical correlations of the top principal components of ``x`` and ``y``."""
    components = cca_dimension(x, y, components)
    x, y = _reduce(x, components), _reduce(y, components)
    qx, _ = np.linalg.qr(x)
    qy, _ = np.linalg.qr(y)
    return np.clip(np.linalg.svd(qx.T @ qy, compute_uv=False), 0.0, 1.0)


def cca_distance(x: np.ndarray, y: np.ndarray, components: int = 10) -> float:
    return float(np.arccos(_clip(np.mean(canonical_correlations(x, y, components)))))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` for centered X, Y."""
    x, y = _center(x), _center(y)
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / denominator) if denominator > 0 else np.nan


def rdm(x: np.ndarray) -> np.ndarray:
    """Correlation-distance RDM of the rows of ``x``: ``1 - corr(x_i, x_j)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.nan_to_num(np.corrcoef(x))


def rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of the upper triangles of the two RDMs (NaN if either is
    constant)."""
    upper = np.triu_indices(x.shape[0], k=1)
    a, b = rdm(x)[upper], rdm(y)[upper]
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with _quiet():
        return float(spearmanr(a, b).statistic)


def metric_value(metric: str, x: np.ndarray, y: np.ndarray, cca_components: int = 10):
    if metric not in METRICS:
        raise InputError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})",
                         key="--metric")
    return _safe(_metric_value, metric, x, y, cca_components)


def _metric_value(metric: str, x: np.ndarray, y: np.ndarray, cca_components: int = 10):
    if metric == "procrustes":
        return procrustes_distance(x, y)
    if metric == "cca":
        return cca_distance(x, y, cca_components)
    if metric == "cka":
        return linear_cka(x, y)
    if metric == "rsa":
        return rsa(x, y)
    raise InputError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})", key="metric")


def held_out_value(metric: str, x_train, y_train, x_test, y_test, cca_components: int):
    """The metric on held-out averages; Procrustes and CCA fit their alignment on the
    training averages (NaN where a fold is degenerate)."""
    return _safe(_held_out_value, metric, x_train, y_train, x_test, y_test, cca_components)


def _held_out_value(metric: str, x_train, y_train, x_test, y_test, cca_components: int):
    if metric == "procrustes":
        rotation = procrustes_fit(x_train, y_train)
        aligned, target = _center(x_test) @ rotation, _center(y_test)
        norms = np.linalg.norm(aligned) * np.linalg.norm(target)
        return float(np.arccos(_clip(np.sum(aligned * target) / norms))) if norms else np.nan
    if metric == "cca":
        k = cca_dimension(x_train, y_train, cca_components)
        _, _, vx = np.linalg.svd(_center(x_train), full_matrices=False)
        _, _, vy = np.linalg.svd(_center(y_train), full_matrices=False)
        a_train, b_train = _center(x_train) @ vx[:k].T, _center(y_train) @ vy[:k].T
        qa, ra = np.linalg.qr(a_train)
        qb, rb = np.linalg.qr(b_train)
        u, _, vt = np.linalg.svd(qa.T @ qb)
        wa = np.linalg.solve(ra, u)
        wb = np.linalg.solve(rb, vt.T)
        a_test = (x_test - x_train.mean(axis=0)) @ vx[:k].T @ wa
        b_test = (y_test - y_train.mean(axis=0)) @ vy[:k].T @ wb
        correlations = [_clip(np.corrcoef(a_test[:, i], b_test[:, i])[0, 1]) for i in range(k)]
        return float(np.arccos(_clip(np.nanmean(correlations))))
    return _metric_value(metric, x_test, y_test, cca_components)


def condition_names(dataset: xr.Dataset) -> list[str]:
    """The coordinates and variables along ``trial`` only (other than ``trial`` itself), in
    the dataset's order: the candidate condition labels, the first one the default."""
    return [str(name) for name, value in {**dataset.coords, **dataset.data_vars}.items()
            if value.dims == (schema.TRIAL,) and name != schema.TRIAL]


def condition_labels(dataset: xr.Dataset, traces: xr.DataArray, condition: str | None,
                     where: str) -> np.ndarray:
    """The label of every trial: a coordinate or variable along ``trial`` only."""
    candidates = condition_names(dataset)
    if condition is None:
        if not candidates:
            raise InputError("no condition labels along 'trial' (a coordinate or variable "
                             "with dims (trial,), e.g. 'condition'); give one with "
                             "--condition", file=where)
        condition = candidates[0]
    if condition not in dataset or dataset[condition].dims != (schema.TRIAL,):
        raise InputError(f"no condition labels '{condition[:60]}' along 'trial' (candidates: "
                         f"{', '.join(candidates) or 'none'})", file=where, key="--condition")
    labels = np.asarray(dataset[condition].values)
    if labels.dtype.kind == "O":  # text labels as netCDF stores them
        labels = np.array(["" if label is None else str(label) for label in labels])
    if labels.dtype.kind == "c":
        raise InputError("condition labels must not be complex numbers", file=where,
                         key=condition)
    return labels


def labelled(labels: np.ndarray) -> np.ndarray:
    """Which trials have a label (not NaN, NaT or empty text)."""
    if labels.dtype.kind == "f":
        return ~np.isnan(labels)
    if labels.dtype.kind in "mM":
        return ~np.isnat(labels)
    if labels.dtype.kind in "US":
        return np.char.str_len(labels) > 0
    return np.ones(len(labels), dtype=bool)


def condition_trials(traces: xr.DataArray, labels: np.ndarray) -> dict:
    """``{label: (trial, time, unit) array}``."""
    return {label: traces.values[labels == label] for label in np.unique(labels)}


def compare(model_data: xr.Dataset, recording: xr.Dataset, *, metrics=METRICS,
            model_variable: str | None = None, recording_variable: str | None = None,
            model_condition: str | None = None, recording_condition: str | None = None,
            folds: int = 2, shuffles: int = 100, cca_components: int = 10, seed: int = 0,
            where: tuple[str, str] = ("model", "recording")) -> xr.Dataset:
    """Compare the activity of ``model_data`` with ``recording``; see the module docstring.

    Returns a Dataset over ``metric`` with ``value`` (all trials), ``cross_validated`` and
    ``cross_validated_std`` (over folds), ``shuffled_mean``/``shuffled_std`` and
    ``p_value`` (share of shuffles at least as good), plus ``is_distance`` (int8).
    """
    rng = np.random.default_rng(seed)
    metrics = list(metrics)
    for metric in metrics:
        if metric not in METRICS:
            raise InputError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})",
                             key="--metric")
    if not metrics:
        raise InputError("no metric to compute", key="--metric")
    for flag, value, minimum in (("--folds", folds, 1), ("--shuffles", shuffles, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < minimum:
            raise InputError(f"must be an integer >= {minimum}, got {value!r}", key=flag)
    if shuffles > MAX_SHUFFLES:
        raise InputError(f"{shuffles} shuffles is more than {MAX_SHUFFLES} (p-values finer "
                         f"than 1/{MAX_SHUFFLES} say nothing more); use fewer",
                         key="--shuffles")
    check_one_network(model_data, where[0])
    check_one_network(recording, where[1])
    model_traces, model_name = activity(model_data, model_variable, where[0])
    recorded, recorded_name = activity(recording, recording_variable, where[1])
    model_labels = condition_labels(model_data, model_traces, model_condition, where[0])
    recorded_labels = condition_labels(recording, recorded, recording_condition, where[1])
    notes = []
    model_traces, model_labels = _usable(model_traces, model_labels, where[0], notes)
    recorded, recorded_labels = _usable(recorded, recorded_labels, where[1], notes)
    model_traces = _on_times(model_traces, recorded, where)
    by_model = condition_trials(model_traces, model_labels)
    by_recording = condition_trials(recorded, recorded_labels)
    shared = [label for label in by_recording if label in by_model]
    if len(shared) < 2:
        raise InputError(f"fewer than two condition labels in common (model: "
                         f"{sorted(map(str, by_model))}, recording: "
                         f"{sorted(map(str, by_recording))}"
                         + (", after dropping trials with NaN, inf or no label" if notes
                            else "") + ")", file=where[1])
    if folds > 1:
        for groups, file in ((by_model, where[0]), (by_recording, where[1])):
            label = min(shared, key=lambda label: len(groups[label]))
            if len(groups[label]) < folds:
                fewest = len(groups[label])
                after = " (after dropping trials with NaN, inf or no label)" if any(
                    note.startswith(f"{file}: ") for note in notes) else ""
                raise InputError(
                    f"{folds} folds need at least {folds} trials per condition, but condition "
                    f"{str(label)!r} has {fewest} in {file}{after}: use --folds "
                    + (f"{fewest} or less" if fewest > 1 else "1 (no cross-validation)"),
                    file=file, key="--folds")
    if "rsa" in metrics:
        for traces, file in ((model_traces, where[0]), (recorded, where[1])):
            if traces.sizes[schema.UNIT] < 2:
                raise InputError("rsa needs at least 2 units (its correlation distances "
                                 f"compare patterns across units); {file} has 1: choose "
                                 "other metrics with --metric", file=file, key="--metric")

    def stack(groups, labels):
        return np.concatenate([groups[label].mean(axis=0) for label in labels], axis=0)

    x, y = stack(by_model, shared), stack(by_recording, shared)
    for values, file, name in ((x, where[0], model_name), (y, where[1], recorded_name)):
        if not np.any(_center(values)):
            raise InputError("is constant over conditions and time (after averaging the "
                             "trials of each condition): there is no activity pattern to "
                             "compare", file=file, key=name)
    rows, p, q = x.shape[0], x.shape[1], y.shape[1]
    if "rsa" in metrics:
        check_memory(array_bytes(rows, rows, 6), f"rsa of {rows} condition-time patterns",
                     file=where[1], key="--metric")
    work = shuffles * sum(metric_work(metric, rows, p, q) for metric in metrics)
    if work > MAX_WORK:
        most = max(1, int(MAX_WORK / max(work / max(shuffles, 1), 1.0)))
        raise InputError(f"{shuffles} shuffles of {rows} condition-time patterns x ({p}, {q}) "
                         f"units would take about {work:.2g} operations (at most "
                         f"{MAX_WORK:.0e}): use --shuffles {most} or less", key="--shuffles")
    results = {name: [] for name in ("value", "cross_validated", "cross_validated_std",
                                     "shuffled_mean", "shuffled_std", "p_value")}
    fold_indices = {label: np.array_split(rng.permutation(len(by_recording[label])), folds)
                    for label in shared}
    model_folds = {label: np.array_split(rng.permutation(len(by_model[label])), folds)
                   for label in shared}
    for metric in metrics:
        value = metric_value(metric, x, y, cca_components)
        scores = []
        for fold in range(folds):
            def split(groups, indices, held_out):
                parts = {label: (np.delete(groups[label], indices[label][fold], axis=0)
                                 if not held_out else groups[label][indices[label][fold]])
                         for label in shared}
                if any(len(p) == 0 for p in parts.values()):
                    return None
                return stack(parts, shared)
            pieces = [split(by_model, model_folds, False), split(by_recording, fold_indices,
                                                                 False),
                      split(by_model, model_folds, True), split(by_recording, fold_indices,
                                                                True)]
            if any(piece is None for piece in pieces):
                continue
            scores.append(held_out_value(metric, *pieces, cca_components))
        shuffled = []
        for _ in range(shuffles):
            permuted = dict(zip(shared, [by_recording[label]
                                         for label in rng.permutation(shared)]))
            shuffled.append(metric_value(metric, x, stack(permuted, shared), cca_components))
        shuffled = np.array(shuffled, dtype=float)
        shuffled = shuffled[np.isfinite(shuffled)]
        scores = np.array(scores, dtype=float)
        scores = scores[np.isfinite(scores)]
        better = shuffled <= value if metric in DISTANCES else shuffled >= value
        results["value"].append(value)
        results["cross_validated"].append(scores.mean() if scores.size else np.nan)
        results["cross_validated_std"].append(scores.std() if scores.size else np.nan)
        results["shuffled_mean"].append(shuffled.mean() if shuffled.size else np.nan)
        results["shuffled_std"].append(shuffled.std() if shuffled.size else np.nan)
        results["p_value"].append((1 + better.sum()) / (1 + shuffled.size)
                                  if shuffled.size and np.isfinite(value) else np.nan)
    data = {name: (("metric",), np.array(values, dtype=float))
            for name, values in results.items()}
    data["is_distance"] = (("metric",), np.array([m in DISTANCES for m in metrics],
                                                 dtype=np.int8))
    return xr.Dataset(data, coords={"metric": list(metrics)}, attrs={
        "analysis": "similarity", "conditions": [str(label) for label in shared],
        "n_time": int(recorded.sizes[schema.TIME]), "folds": int(folds),
        "shuffles": int(shuffles), **({"dropped": "; ".join(notes)} if notes else {})})


def _usable(traces: xr.DataArray, labels: np.ndarray, where: str, notes: list):
    """``(traces, labels)`` without the trials holding NaN or inf or lacking a label; what
    was dropped goes to ``notes``."""
    if len(labels) != traces.sizes[schema.TRIAL]:
        raise InputError(f"{len(labels)} condition labels for {traces.sizes[schema.TRIAL]} "
                         "trials", file=where, key=schema.TRIAL)
    before = labels
    traces, note, kept = drop_nonfinite(traces, where, purpose="the comparison")
    labels = labels[kept]
    if note:
        notes.append(note)
    has_label = labelled(labels)
    if not has_label.all():
        if not has_label.any():
            raise InputError("no trial has a condition label (all NaN or empty)", file=where)
        notes.append(f"{where}: dropped {(~has_label).sum()} of {len(has_label)} trials "
                     f"without a condition label (NaN or empty); {has_label.sum()} remain")
        traces, labels = traces.isel({schema.TRIAL: has_label}), labels[has_label]
    lost = [str(label) for label in np.unique(before[labelled(before)])
            if not np.any(labels == label)]
    if lost:
        notes.append(f"{where}: condition{'s' if len(lost) > 1 else ''} {', '.join(lost)} "
                     "lost all trials")
    return traces, labels


def _on_times(model_traces: xr.DataArray, recorded: xr.DataArray, where) -> xr.DataArray:
    """The model's activity at the recording's time points (linear interpolation)."""
    if schema.TIME not in recorded.coords or schema.TIME not in model_traces.coords:
        if model_traces.sizes[schema.TIME] != recorded.sizes[schema.TIME]:
            raise InputError("without time coordinates, the model and the recording need "
                             "the same number of time points", file=where[1],
                             key=schema.TIME)
        return model_traces
    times = recorded[schema.TIME].values
    model_times = model_traces[schema.TIME].values
    for values, file in ((model_times, where[0]), (times, where[1])):
        if values.dtype.kind not in "iuf" or not np.isfinite(values).all() \
                or np.any(np.diff(values) <= 0):
            raise InputError("the time coordinate must be finite numbers (seconds) that "
                             "increase", file=file, key=schema.TIME)
    if times.min() < model_times.min() - 1e-12 or times.max() > model_times.max() + 1e-12:
        raise InputError(f"the recording's times ({times.min():g} to {times.max():g} s) "
                         f"exceed the model's ({model_times.min():g} to "
                         f"{model_times.max():g} s)", file=where[1], key=schema.TIME)
    return model_traces.interp({schema.TIME: times})
