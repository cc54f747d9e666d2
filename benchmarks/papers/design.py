"""Design checks: what a reproduction's design can resolve when the paper's numbers are true.

A reduced reproduction trains few networks at few points; before reading a "no" in its
table one must know whether the design could have said "yes". A design check simulates the
design with the paper's published numbers as the truth (binomial draws of the paper's
per-point fractions at the design's seeds; normal draws of reported means with their
spreads), runs the reproduction's own summary code on each draw, and reports the interval
of what that code would print (5-95% over draws). Nothing is trained.

The paper's numbers come from ``benchmarks/papers/data/`` (read from the papers' figures;
each file says how).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def paper_data(name: str) -> dict:
    """The JSON file ``name`` of ``benchmarks/papers/data``."""
    return json.loads((DATA / name).read_text())


@dataclass(frozen=True)
class Grid:
    """Fractions on a (learning rate, delay) grid: ``fractions[i, j]`` at ``lrs[i]``,
    ``delays[j]`` (ms)."""

    lrs: np.ndarray
    delays: np.ndarray
    fractions: np.ndarray

    def on_grid(self, lrs, delays) -> bool:
        """Whether every point ``lrs x delays`` is a grid point (lr within 0.1%)."""
        return all(np.min(np.abs(np.log(self.lrs / lr))) < 1e-3 for lr in lrs) and \
            all(np.min(np.abs(self.delays - d)) < 1e-9 for d in delays)

    def at(self, lrs, delays) -> np.ndarray:
        """Fractions at the points ``lrs x delays``: linear in log learning rate and in
        delay between grid points, the nearest grid value outside the grid."""
        order = np.argsort(self.lrs)
        log_lrs, table = np.log(self.lrs[order]), self.fractions[order]
        by_delay = np.array([[np.interp(d, self.delays, row) for d in delays] for row in table])
        return np.array([[np.interp(np.log(lr), log_lrs, by_delay[:, j])
                          for j in range(len(delays))] for lr in lrs])


def interval(values, low: float = 5, high: float = 95) -> tuple[float, float, float]:
    """``(median, low percentile, high percentile)`` of the finite ``values``."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (np.nan, np.nan, np.nan)
    return tuple(float(v) for v in np.percentile(values, [50, low, high]))


def binomial_fractions(truth: np.ndarray, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """Observed fractions of ``seeds`` networks per point when ``truth`` is the chance."""
    return rng.binomial(seeds, np.clip(truth, 0.0, 1.0)) / seeds


def resolves(paper_value: float, spread: tuple[float, float, float]) -> bool:
    """Whether the paper's value lies inside the design's 5-95% interval."""
    return bool(spread[1] <= paper_value <= spread[2])


def text(spread: tuple[float, float, float], digits: int = 2) -> str:
    median, low, high = spread
    return f"{median:.{digits}f} (5-95%: {low:.{digits}f} to {high:.{digits}f})"


def false_pass(true_accuracy: float, threshold: float, trials: int) -> float:
    """Chance that a network whose true accuracy is ``true_accuracy`` scores above
    ``threshold`` on ``trials`` test trials (binomial)."""
    from scipy import stats
    return float(stats.binom.sf(math.floor(threshold * trials), trials, true_accuracy))


def ordering_power(means: list[float], sds: list[float], seeds: int, draws: int,
                   rng: np.random.Generator, alpha: float = 0.05) -> float:
    """Fraction of draws (``seeds`` normal values per group, the groups' ``means`` and
    ``sds``) in which every one-sided Mann-Whitney test ``group i > group i+1`` has p <
    ``alpha``: the chance that the design shows the ordering if the paper's numbers hold."""
    from scipy import stats
    shown = 0
    for _ in range(draws):
        groups = [rng.normal(m, s, seeds) for m, s in zip(means, sds)]
        shown += all(stats.mannwhitneyu(a, b, alternative="greater").pvalue < alpha
                     for a, b in zip(groups, groups[1:]))
    return shown / draws


def paired_resolution(pairs: int, alpha: float = 0.05) -> int:
    """The fewest pairs that must differ, all in one direction, for the exact two-sided
    Wilcoxon signed-rank test over ``pairs`` pairs to give p < ``alpha`` (0: never)."""
    for differing in range(1, pairs + 1):
        if 2.0 / 2 ** differing < alpha:
            return differing
    return 0


def fisher_resolution(size: int, alpha: float = 0.05) -> int:
    """The fewest successes in one group of ``size`` against none in the other for the
    one-sided Fisher exact test to give p < ``alpha`` (0: never)."""
    from scipy import stats
    for successes in range(1, size + 1):
        table = [[successes, size - successes], [0, size]]
        if stats.fisher_exact(table, alternative="greater").pvalue < alpha:
            return successes
    return 0


def homogeneity(counts, n: int, paper_counts, paper_n: int) -> float:
    """p of the G-test that two sets of binomial counts (``counts`` of ``n`` per point,
    ``paper_counts`` of ``paper_n``) have the same chance at every point: the sum over
    points of each 2x2 table's G statistic, chi-square with one degree of freedom per
    point (points where both are 0 or both are all add nothing, and count no degree)."""
    from scipy import stats
    counts = np.asarray(counts, dtype=float).ravel()
    paper_counts = np.asarray(paper_counts, dtype=float).ravel()
    pooled = (counts + paper_counts) / (n + paper_n)
    informative = (pooled > 0) & (pooled < 1)
    if not informative.any():
        return 1.0
    g = 0.0
    for observed, size in ((counts, n), (paper_counts, paper_n)):
        for hits, chance in ((observed, pooled), (size - observed, 1 - pooled)):
            expected = size * chance
            keep = informative & (hits > 0)
            g += 2 * np.sum(hits[keep] * np.log(hits[keep] / expected[keep]))
    return float(stats.chi2.sf(g, int(informative.sum())))


def shift_resolution(truth: np.ndarray, seeds: int, paper_n: int, draws: int,
                     rng: np.random.Generator, alpha: float = 0.05,
                     shifts=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)) -> tuple[float, float]:
    """``(false alarm rate, smallest shift detected)``: how often `homogeneity` rejects
    (p < ``alpha``) when ``seeds`` networks per point follow the paper's fractions
    ``truth`` (estimated from ``paper_n`` networks), and the smallest shift of every
    fraction's log-odds (either sign) rejected in at least 80% of draws (NaN: none of
    ``shifts``)."""
    paper_counts = np.round(np.asarray(truth) * paper_n)
    chance = paper_counts / paper_n
    logit = np.log(np.clip(chance, 1e-12, 1) / np.clip(1 - chance, 1e-12, 1))
    false_alarm, smallest = math.nan, math.nan
    for shift in shifts:
        rejected = 0
        for draw in range(draws):
            sign = 1 if draw % 2 == 0 else -1
            shifted = np.where((chance > 0) & (chance < 1),
                               1 / (1 + np.exp(-(logit + sign * shift))), chance)
            counts = rng.binomial(seeds, shifted)
            rejected += homogeneity(counts, seeds, paper_counts, paper_n) < alpha
        if shift == 0:
            false_alarm = rejected / draws
        elif rejected >= 0.8 * draws:
            smallest = shift
            break
    return false_alarm, smallest
