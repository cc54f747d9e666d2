"""Whether and when networks learned, and how learning boundaries scale.

Kurtkaya, Dinc et al. (ICML 2025; code fatihdinc/dynamical-phases-stm, sort_data.py and
Figures/Figure4/code/nopost/plot_nopost.py):

- `learning_outcome`: *learned*, *unstable* or *not learned* from the test accuracy and
  reliability (mean probability given to the correct class) per epoch, exactly as the
  paper's sort_data.py classifies; from the accuracy alone where no reliability is given.
- `critical_delay`: the delay T0 where a network stops learning, from the fraction not
  learned against the delay, fitted with ``f(T) = 0`` for ``T < T0`` and ``1 - exp(-a (T -
  T0))`` beyond.
- `power_law`: ``log y = beta log x + c`` by least squares, with the standard error and 95%
  interval of beta (the paper: ``eta_c ~ T0^-beta``, beta = 2.72 +- 0.07).

Abrupt learning (Haputhanthri et al. 2025): `drop_epoch`, the first epoch whose loss falls
below a fraction of a reference loss (bioplast uses the loss of a network that outputs zero,
`null_loss`: the plateau of a network that has learned nothing is near it).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

LEARNED, NOT_LEARNED, UNSTABLE = "learned", "not_learned", "unstable"


def learning_outcome(accuracy: np.ndarray, reliability: np.ndarray | None = None,
                     threshold: float = 0.8, low: float = 0.6, tail: float = 0.1,
                     max_dips: float = 0.1) -> str:
    """``learned``, ``not_learned`` or ``unstable`` from the test ``accuracy`` and
    ``reliability`` per epoch, both ``(epoch,)``; epochs where either is NaN (e.g. after an
    early stop) are left out.

    With ``reliability``: the rule of the paper's code (sort_data.py, the reference, tested
    against a transcription of it), `paper_outcome`. Without (None): from the accuracy
    alone, learned when its mean over the last ``tail`` of epochs (rounded up) exceeds
    ``threshold`` and, from the first epoch above ``threshold`` on, fewer than
    ``max_dips`` as many epochs fall below ``low`` as lie at or above it (else unstable);
    otherwise not learned.
    """
    if reliability is not None:
        return paper_outcome(accuracy, reliability, threshold, low, tail, max_dips)
    accuracy = np.asarray(accuracy, dtype=float)
    accuracy = accuracy[np.isfinite(accuracy)]
    if accuracy.size == 0:
        return NOT_LEARNED
    last = accuracy[-max(1, int(math.ceil(tail * accuracy.size))):]
    if not last.mean() > threshold:
        return NOT_LEARNED
    after = accuracy[int(np.argmax(accuracy > threshold)):]
    above, below = np.sum(after >= low), np.sum(after < low)
    return LEARNED if below < max_dips * max(above, 1) else UNSTABLE


def paper_outcome(accuracy: np.ndarray, reliability: np.ndarray, threshold: float = 0.8,
                  low: float = 0.6, tail: float = 0.1, max_dips: float = 0.1) -> str:
    """The paper's classification (sort_data.py) of accuracy and reliability per epoch
    ``(epoch,)``, epochs where either is NaN left out. From the first epoch where both
    exceed ``threshold`` on, *few dips* means (epochs of accuracy below ``low`` + those of
    reliability below it) / (those above it, likewise) < ``max_dips``; with no such epoch,
    few dips holds. Learned: the means of both over the last epochs (from index ``int((1 -
    tail) n)``) exceed ``threshold``, and few dips. Otherwise unstable without few dips,
    else not learned. (As in the paper's code, a network never above ``threshold`` in both
    at once still counts as learned if its last epochs' means are.)"""
    accuracy, reliability = np.asarray(accuracy, float), np.asarray(reliability, float)
    kept = np.isfinite(accuracy) & np.isfinite(reliability)
    accuracy, reliability = accuracy[kept], reliability[kept]
    if accuracy.size == 0:
        return NOT_LEARNED
    both = np.flatnonzero((accuracy > threshold) & (reliability > threshold))
    few_dips = True
    if both.size:
        after = np.concatenate([accuracy[both[0]:], reliability[both[0]:]])
        few_dips = np.sum(after < low) / np.sum(after > low) < max_dips
    last = int(accuracy.size * (1 - tail))
    if accuracy[last:].mean() > threshold and reliability[last:].mean() > threshold \
            and few_dips:
        return LEARNED
    return NOT_LEARNED if few_dips else UNSTABLE


def _onset(delay, t0, rate):
    return np.where(delay < t0, 0.0, 1.0 - np.exp(-rate * np.clip(delay - t0, 0, None)))


def critical_delay(delays: np.ndarray, not_learned: np.ndarray) -> float:
    """T0 of the fit of ``not_learned`` (fraction per delay) against ``delays``: NaN when
    every delay learned (no boundary inside the range), the smallest delay when none did."""
    delays = np.asarray(delays, dtype=float)
    not_learned = np.asarray(not_learned, dtype=float)
    if np.all(not_learned == 0):
        return math.nan
    if np.all(not_learned >= 1):
        return float(delays.min())
    span = float(delays.max() - delays.min()) or 1.0
    best, best_cost = math.nan, math.inf
    for start in np.linspace(delays.min(), delays.max(), 9):  # the fit is not convex in T0
        try:
            with warnings.catch_warnings():  # a flat boundary has no covariance: fine here
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                (t0, rate), _ = optimize.curve_fit(
                    _onset, delays, not_learned, p0=(start, 3.0 / span),
                    bounds=([delays.min() - span, 1e-6 / span], [delays.max(), 1e3 / span]))
        except (RuntimeError, ValueError):
            continue
        cost = float(np.sum((_onset(delays, t0, rate) - not_learned) ** 2))
        if cost < best_cost:
            best, best_cost = float(t0), cost
    return best


@dataclass(frozen=True)
class PowerLaw:
    """``y ~ x^beta``: the exponent with its standard error, 95% interval and R^2."""

    beta: float
    stderr: float
    low: float
    high: float
    r2: float
    n: int


def power_law(x: np.ndarray, y: np.ndarray) -> PowerLaw:
    """Least squares of ``log y`` on ``log x`` over the finite, positive pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if keep.sum() < 3:
        return PowerLaw(math.nan, math.nan, math.nan, math.nan, math.nan, int(keep.sum()))
    fit = stats.linregress(np.log(x[keep]), np.log(y[keep]))
    spread = stats.t.ppf(0.975, keep.sum() - 2) * fit.stderr
    return PowerLaw(float(fit.slope), float(fit.stderr), float(fit.slope - spread),
                    float(fit.slope + spread), float(fit.rvalue ** 2), int(keep.sum()))


def drop_epoch(loss: np.ndarray, reference: float, fraction: float = 0.1) -> float:
    """The first epoch whose ``loss`` is below ``fraction * reference`` (NaN: never)."""
    loss = np.asarray(loss, dtype=float)
    below = np.nonzero(np.isfinite(loss) & (loss < fraction * reference))[0]
    return float(below[0]) if below.size else math.nan


def null_loss(task, level=None, batch_size: int = 256, seed: int = 0) -> float:
    """The task's loss for outputs that are zero everywhere, on a fresh batch: what a
    network that has learned nothing (silent readout) scores."""
    import torch
    level = task.initial_level() if level is None else level
    batch = task.sample(batch_size, np.random.default_rng(seed), level)
    targets = torch.as_tensor(batch.targets, dtype=torch.float64)
    return float(task.loss_value(torch.zeros_like(targets), targets,
                                 torch.as_tensor(batch.mask, dtype=torch.float64), level))
