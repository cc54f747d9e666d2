"""Geometry of population activity: principal components and dimensionality.

PCA of ``(trial, time, unit)`` activity pooled over trials and time (centered per unit),
the participation ratio ``PR = (sum_i l_i)^2 / sum_i l_i^2`` of the covariance eigenvalues
``l_i`` (Gao & Ganguli 2015), and the number of components that explain 90% of the variance
(Khajehabdollahi, Zeraati et al. 2024). Trials holding NaN or inf are left out (the
``dropped`` attr says which); activity without variance gives NaN ratios and 0 components.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError
from .data import activity, drop_nonfinite

COMPONENT = "component"


def principal_components(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean (unit,), eigenvalues (component,), components (component, unit))`` of the
    covariance of ``values`` ``(sample, unit)``, eigenvalues in decreasing order."""
    mean = values.mean(axis=0)
    try:
        _, singular, components = np.linalg.svd(values - mean, full_matrices=False)
    except np.linalg.LinAlgError:
        raise InputError("the principal components did not converge (activity with NaN, "
                         "inf or extreme values?)") from None
    eigenvalues = singular ** 2 / max(len(values) - 1, 1)
    return mean, eigenvalues, components


def participation_ratio(eigenvalues: np.ndarray) -> float:
    total = float(np.sum(eigenvalues))
    squares = float(np.sum(eigenvalues ** 2))
    return total ** 2 / squares if total > 0 and squares > 0 else float("nan")


def components_for(eigenvalues: np.ndarray, fraction: float = 0.9) -> int:
    """Smallest number of components whose variance reaches ``fraction`` of the total."""
    total = np.sum(eigenvalues)
    if not total > 0:
        return 0  # no variance: no component explains any
    cumulative = np.cumsum(eigenvalues) / total
    return int(np.searchsorted(cumulative, fraction - 1e-12) + 1)


def geometry(data, variable: str | None = None, fraction: float = 0.9,
             where: str = "data") -> xr.Dataset:
    """PCA and dimensionality of ``data`` (see module docstring).

    Returns a Dataset with ``explained_variance (component)``, ``explained_variance_ratio``,
    ``components (component, unit)``, ``projections (trial, time, component)`` (the
    activity in PC coordinates), ``mean_activity (unit)``, ``participation_ratio`` and
    ``n_components_90`` (for ``fraction = 0.9``).
    """
    traces, name = activity(data, variable, where)
    traces, note, _ = drop_nonfinite(traces, where, purpose="the geometry")
    values = traces.values
    trials, steps, units = values.shape
    try:
        mean, eigenvalues, components = principal_components(values.reshape(-1, units))
    except InputError as error:
        raise InputError(error.message, file=where, key=name) from None
    projections = (values - mean) @ components.T
    ratio = eigenvalues / eigenvalues.sum() if eigenvalues.sum() > 0 else eigenvalues * np.nan
    coords = {COMPONENT: np.arange(len(eigenvalues))}
    for dim in (schema.TRIAL, schema.TIME, schema.UNIT):
        if dim in traces.coords:
            coords[dim] = traces[dim]
    dataset = xr.Dataset({
        "explained_variance": ((COMPONENT,), eigenvalues),
        "explained_variance_ratio": ((COMPONENT,), ratio),
        "components": ((COMPONENT, schema.UNIT), components),
        "mean_activity": ((schema.UNIT,), mean),
        "participation_ratio": ((), participation_ratio(eigenvalues)),
        f"n_components_{round(fraction * 100)}": ((), components_for(eigenvalues, fraction)),
        "projections": ((schema.TRIAL, schema.TIME, COMPONENT), projections),
    }, coords=coords, attrs={"analysis": "geometry", "variable": name,
                             **({"dropped": note} if note else {})})
    return dataset
