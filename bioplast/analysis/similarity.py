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
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.stats import spearmanr

from .. import schema
from ..errors import InputError
from .data import activity

METRICS = ("procrustes", "cca", "cka", "rsa")
DISTANCES = ("procrustes", "cca")  # the others are similarities


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
    """Spearman correlation of the upper triangles of the two RDMs."""
    upper = np.triu_indices(x.shape[0], k=1)
    return float(spearmanr(rdm(x)[upper], rdm(y)[upper]).statistic)


def metric_value(metric: str, x: np.ndarray, y: np.ndarray, cca_components: int = 10):
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
    training averages."""
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
    return metric_value(metric, x_test, y_test, cca_components)


def condition_labels(dataset: xr.Dataset, traces: xr.DataArray, condition: str | None,
                     where: str) -> np.ndarray:
    """The label of every trial: a coordinate or variable along ``trial`` only."""
    candidates = [str(name) for name, value in {**dataset.coords, **dataset.data_vars}.items()
                  if value.dims == (schema.TRIAL,) and name != schema.TRIAL]
    if condition is None:
        if not candidates:
            raise InputError("no condition labels along 'trial' (a coordinate or variable "
                             "with dims (trial,), e.g. 'condition'); give one with "
                             "--condition", file=where)
        condition = candidates[0]
    if condition not in dataset or dataset[condition].dims != (schema.TRIAL,):
        raise InputError(f"no condition labels '{condition}' along 'trial' (candidates: "
                         f"{', '.join(candidates) or 'none'})", file=where, key=condition)
    return np.asarray(dataset[condition].values)


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
    model_traces, _ = activity(model_data, model_variable, where[0])
    recorded, _ = activity(recording, recording_variable, where[1])
    model_labels = condition_labels(model_data, model_traces, model_condition, where[0])
    recorded_labels = condition_labels(recording, recorded, recording_condition, where[1])
    model_traces = _on_times(model_traces, recorded, where)
    by_model = condition_trials(model_traces, model_labels)
    by_recording = condition_trials(recorded, recorded_labels)
    shared = [label for label in by_recording if label in by_model]
    if len(shared) < 2:
        raise InputError(f"fewer than two condition labels in common (model: "
                         f"{sorted(map(str, by_model))}, recording: "
                         f"{sorted(map(str, by_recording))})", file=where[1])
    for metric in metrics:
        if metric not in METRICS:
            raise InputError(f"unknown metric '{metric}' (known: {', '.join(METRICS)})",
                             key="metric")

    def stack(groups, labels):
        return np.concatenate([groups[label].mean(axis=0) for label in labels], axis=0)

    x, y = stack(by_model, shared), stack(by_recording, shared)
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
        shuffled = np.array(shuffled)
        better = shuffled <= value if metric in DISTANCES else shuffled >= value
        results["value"].append(value)
        results["cross_validated"].append(np.mean(scores) if scores else np.nan)
        results["cross_validated_std"].append(np.std(scores) if scores else np.nan)
        results["shuffled_mean"].append(shuffled.mean() if shuffles else np.nan)
        results["shuffled_std"].append(shuffled.std() if shuffles else np.nan)
        results["p_value"].append((1 + better.sum()) / (1 + shuffles) if shuffles else np.nan)
    data = {name: (("metric",), np.array(values, dtype=float))
            for name, values in results.items()}
    data["is_distance"] = (("metric",), np.array([m in DISTANCES for m in metrics],
                                                 dtype=np.int8))
    return xr.Dataset(data, coords={"metric": list(metrics)}, attrs={
        "analysis": "similarity", "conditions": [str(label) for label in shared],
        "n_time": int(recorded.sizes[schema.TIME]), "folds": int(folds),
        "shuffles": int(shuffles)})


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
    if times.min() < model_times.min() - 1e-12 or times.max() > model_times.max() + 1e-12:
        raise InputError(f"the recording's times ({times.min():g} to {times.max():g} s) "
                         f"exceed the model's ({model_times.min():g} to "
                         f"{model_times.max():g} s)", file=where[1], key=schema.TIME)
    return model_traces.interp({schema.TIME: times})
