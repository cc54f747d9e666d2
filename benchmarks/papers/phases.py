"""Dynamical phases of short-term memory (Kurtkaya, Dinc et al., ICML 2025).

Delayed-cue networks (protocols/papers/phases.yaml) over a grid of learning rates x delays
x seeds, one Dask sweep per epoch budget (max(1000, 30/lr), as in the paper; the
learning rate is a grid dim). Each network is classified as learned / not learned / unstable
(`bioplast.analysis.learning`), each learned one as a limit cycle or slow-point manifold
from its test trials continued for 9x their length with zero input
(`bioplast.analysis.dynamics`). Per learning rate, the critical delay T0 of the no-solution
boundary; over learning rates, beta of eta_c ~ T0^-beta with its 95% interval (paper: 2.72
+- 0.07). Writes ``rows.json``, ``networks.json`` and ``phases.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bioplast.analysis.analyze import result_model
from bioplast.analysis.dynamics import LIMIT_CYCLE, SLOW_POINT, classify_mechanism, extended_run
from bioplast.analysis.learning import (LEARNED, critical_delay,
                                        learning_outcome, power_law)
from bioplast.results import INITIAL_PREFIX, select_network
from bioplast.sweep import run_sweep

from .common import PROTOCOLS, command, design_row, map_in_processes, row, save
from .design import (Grid, binomial_fractions, homogeneity, interval, paper_data,
                     resolves, shift_resolution, text)

CITATION = ('Kurtkaya, Dinc, Yuksekgonul, Blanco-Pozo, Cirakman, Schnitzer, Yemez, Tanaka, Yuan, '
            'Miolane, "Dynamical phases of short-term memory mechanisms in RNNs", ICML 2025, '
            'arXiv 2502.17433; code fatihdinc/dynamical-phases-stm')
PAPER_BETA = (2.72, 0.07)
PAPER_DATA = "phases_figure4.json"
PAPER_SEEDS = 100  # networks per (learning rate, delay) in the paper
SCALES = {
    "smoke": dict(lrs=[0.5, 0.05], delays_ms=[0, 40], seeds=2, n_units=16,
                  epochs=lambda lr: 15),
    # chosen by the design check (`--design-check`): three of the paper's learning rates
    # (T0 34, 56 and 91 ms there) at the paper's delays up to 140 ms, 12 seeds per point:
    # the per-point G-test against the paper's fractions detects a shift of every point's
    # log-odds by 1; beta cannot be resolved at this size (the medium scale can). (Delays
    # up to 160 ms took 61-63 min on 2 cores; 160 ms was the costliest delay.)
    "reduced": dict(lrs=[0.31622776601683794, 0.1, 0.02976351441631319],
                    delays_ms=list(range(0, 141, 20)), seeds=12, n_units=100,
                    epochs=lambda lr: max(1000, int(round(30 / lr)))),
    # every second of the paper's 30 learning rates (beta needs their whole range: the low
    # rates, with up to 30,000 epochs, carry the long T0), its 21 delays, 20 seeds: beta
    # 2.50 (5-95%: 2.11-2.78) if the paper's fractions hold, ~114 h on 2 cores (the
    # design check prints the estimate); all 30 rates at 20 seeds: 2.45 (2.21-2.62), 263 h
    "medium": dict(lrs="paper", lr_every=2, delays_ms=list(range(0, 401, 20)), seeds=20,
                   n_units=100, epochs=lambda lr: max(1000, int(round(30 / lr)))),
    "full": dict(lrs="paper", delays_ms=list(range(0, 401, 20)), seeds=100, n_units=100,
                 epochs=lambda lr: max(1000, int(round(30 / lr)))),
}
#: minutes one network takes per 1000 epochs on one core, as a + b * delay (ms), with
#: ``training.score_on: training`` (measured with benchmarks/papers/phases_cost.py, 16
#: networks as one ensemble, delays 0 / 100 / 200 ms: 0.13 / 0.30 / 0.61 min)
COST_PER_1000_EPOCHS = (0.13, 0.0024)


def scale_settings(scale: str | dict) -> dict:
    """The settings of ``scale`` (a name in `SCALES` or such settings), with
    ``lrs: paper`` replaced by the paper's learning rates (every ``lr_every``-th)."""
    settings = dict(SCALES[scale] if isinstance(scale, str) else scale)
    if settings["lrs"] == "paper":
        settings["lrs"] = [float(lr) for lr in paper_grid().lrs][::settings.get("lr_every", 1)]
    return settings


def estimated_minutes(settings: dict, cores: int = 2) -> float:
    """Training time of a design on ``cores`` cores from `COST_PER_1000_EPOCHS`."""
    a, b = COST_PER_1000_EPOCHS
    per_seed = sum(settings["epochs"](lr) / 1000 * (a + b * d)
                   for lr in settings["lrs"] for d in settings["delays_ms"])
    return per_seed * settings["seeds"] / cores


def classify_network(network) -> tuple[str, str | None]:
    """``(learning outcome, mechanism or None)`` of one trained network's dataset; the
    outcome from its accuracy and reliability per epoch as the paper classifies (from the
    accuracy alone for a result recorded without reliability)."""
    per_epoch = {name: network[name].mean("head", skipna=True).values
                 for name in ("accuracy", "reliability") if name in network}
    outcome = learning_outcome(per_epoch["accuracy"], per_epoch.get("reliability"))
    if outcome != LEARNED:
        return outcome, None
    model, params = result_model(network)
    inputs = network["inputs"].transpose("trial", "time", "input").values
    initial = {name: network[INITIAL_PREFIX + name].values for name in model.state_names}
    run = extended_run(model, params, inputs, initial)
    kinds = classify_mechanism(run, trial_steps=inputs.shape[1])["mechanism"].values
    return outcome, LIMIT_CYCLE if np.mean(kinds == LIMIT_CYCLE) > 0.5 else SLOW_POINT


def run(scale: str, out: Path, workers: int) -> list[dict]:
    settings = scale_settings(scale)
    protocol = PROTOCOLS / "phases.yaml"
    delays = [f"{d} ms" for d in settings["delays_ms"]]
    trained = []
    started = time.perf_counter()
    by_epochs: dict[int, list[float]] = {}  # one sweep per epoch budget, lr a grid dim
    for lr in settings["lrs"]:
        by_epochs.setdefault(settings["epochs"](lr), []).append(float(lr))
    for index, (epochs, lrs) in enumerate(by_epochs.items()):
        print(f"{len(lrs)} learning rates x {len(delays)} delays x {settings['seeds']} seeds,"
              f" {epochs} epochs", flush=True)
        dataset = run_sweep(str(protocol), {"rule.optimizer.lr": lrs, "task.delay": delays,
                                            "seed": list(range(settings["seeds"]))},
                            out / f"sweep{index}.nc", workers=workers,
                            base_settings={"training.epochs": epochs,
                                           "model.n_units": settings["n_units"]})
        for lr in lrs:
            for delay, delay_ms in zip(delays, settings["delays_ms"]):
                for seed in range(settings["seeds"]):
                    trained.append(({"lr": lr, "delay_ms": delay_ms, "seed": seed},
                                    select_network(dataset, lr=lr, delay=delay,
                                                   seed=seed).load()))
    print(f"mechanisms of {len(trained)} networks", flush=True)
    classes = map_in_processes(classify_network, [(network,) for _, network in trained],
                               workers)
    networks = [{**labels, "outcome": outcome, "mechanism": mechanism}
                for (labels, _), (outcome, mechanism) in zip(trained, classes)]
    return report(networks, scale, out, time.perf_counter() - started, workers)


def resummarize(scale: str, out: Path, workers: int) -> list[dict]:
    """The rows and figure of a finished run again, from its saved ``networks.json`` (no
    training; the runtime is the run's)."""
    networks = json.loads((out / "networks.json").read_text())
    elapsed = json.loads((out / "rows.json").read_text())[0]["runtime_s"]
    return report(networks, scale, out, elapsed, workers)


def report(networks: list[dict], scale: str, out: Path, elapsed: float,
           workers: int) -> list[dict]:
    """`summarize` the classified ``networks``, save the rows and networks to ``out`` and
    draw the phase diagram there; the rows."""
    rows = summarize(networks, scale_settings(scale), scale, elapsed, workers)
    save(out, rows, networks)
    plot_phases(networks, rows, out / "phases.png")
    return rows


def summarize(networks, settings, scale, elapsed, workers, draws: int = 200) -> list[dict]:
    """Table rows: the not-learned fraction per point against the paper's (G-test), T0 per
    learning rate and beta, each beside what the design would report if the paper's
    fractions held (`simulate_design`: a value outside that 5-95% interval disagrees; where
    the paper's own value falls outside it, the design cannot tell), and the phases seen.
    Unstable networks count as not learned, as the paper's analysis counts them."""
    lrs, delays = settings["lrs"], np.array(settings["delays_ms"], dtype=float)
    counts = np.array([[sum(n["outcome"] != LEARNED for n in networks
                            if n["lr"] == float(lr) and n["delay_ms"] == d) for d in delays]
                       for lr in lrs])
    fractions = counts / settings["seeds"]
    boundaries, fit = boundary_fit(lrs, delays, fractions)
    beta = -fit.beta
    expected = simulate_design(settings, draws)
    phases_seen = sorted({phase_of(networks, float(lr), d) for lr in lrs for d in delays})
    command_text = command("phases", scale, workers)
    rows = []
    if expected["paper_counts"] is not None:
        p = homogeneity(counts, settings["seeds"], expected["paper_counts"], PAPER_SEEDS)
        rows.append(row(
            "not-learned fraction per (learning rate, delay) consistent with the paper's",
            f"{PAPER_SEEDS} seeds per point (unstable counted as not learned)",
            f"G-test p = {p:.3g} over {counts.size} points, {settings['seeds']} seeds each "
            f"(the design: {expected['cells']})", bool(p >= 0.05), command_text, elapsed))
    t0_parts, t0_agree = [], []
    for lr, t0, fraction, spread in zip(lrs, boundaries, fractions, expected["t0"]):
        paper = paper_t0(float(lr))
        inside = bool(spread[1] <= t0 <= spread[2]) if np.isfinite(t0) else False
        t0_agree.append(inside)
        t0_parts.append(f"lr {lr:.3g}: T0 = {t0:.0f} ms, design {spread[1]:.0f}-{spread[2]:.0f}"
                        f" [paper {paper:.0f}] (not learned "
                        f"{'/'.join(f'{f:.2f}' for f in fraction)})")
    rows.append(row("critical delay T0 per learning rate (onset fit of the not-learned "
                    "fraction)", "T0 per learning rate (Fig. 4)",
                    "; ".join(t0_parts) + f" at delays {'/'.join(f'{d:g}' for d in delays)} ms",
                    all(t0_agree), command_text, elapsed))
    spread = expected["beta"]
    can_tell = spread[1] <= PAPER_BETA[0] <= spread[2]
    within = bool(spread[1] <= beta <= spread[2])
    rows.append(row("no-solution boundary eta_c ~ T_delay^-beta",
                    f"beta = {PAPER_BETA[0]} +- {PAPER_BETA[1]}",
                    f"beta = {beta:.2f} +- {fit.stderr:.2f} (R^2 {fit.r2:.2f}; {fit.n} learning "
                    f"rates with a boundary); the design: {text(spread)}",
                    within if can_tell else "cannot tell", command_text, elapsed))
    rows.append(row("three phases: both mechanisms, limit cycles only, no learning",
                    "all three (Fig. 4G-I)", ", ".join(phases_seen),
                    {"both", "limit cycles only", "no learning"} <= set(phases_seen),
                    command_text, elapsed))
    return rows


def boundary_fit(lrs, delays, fractions):
    """``(T0 per learning rate, power law of learning rate on T0)`` from the not-learned
    ``fractions[i][j]`` at ``lrs[i]``, ``delays[j]`` (ms): the onset fit per learning rate
    (`critical_delay`), then ``eta_c ~ T0^-beta`` (beta = minus the fitted exponent)."""
    delays = np.asarray(delays, dtype=float)
    boundaries = [critical_delay(delays, np.asarray(f, dtype=float)) for f in fractions]
    return boundaries, power_law(np.array(boundaries), np.array(lrs, dtype=float))


def paper_grid() -> Grid:
    """The paper's not-learned fractions (100 seeds per point, unstable counted as not
    learned) on its 30 learning rates x 21 delays."""
    data = paper_data(PAPER_DATA)
    by_lr = data["not_learned_fraction"]["by_learning_rate"]
    return Grid(np.array([float(k) for k in by_lr]), np.array(data["delay_ms"], dtype=float),
                np.array(list(by_lr.values()), dtype=float))


def paper_t0(lr: float) -> float:
    """The paper's T0 (ms) at the learning rate nearest ``lr`` (within 2%), else NaN."""
    by_lr = paper_data(PAPER_DATA)["critical_delay_T0_ms"]["by_learning_rate"]
    nearest = min(by_lr, key=lambda k: abs(np.log(float(k) / lr)))
    return float(by_lr[nearest]) if abs(np.log(float(nearest) / lr)) < 0.02 else np.nan


def simulate_design(scale: str | dict, draws: int = 200, seed: int = 0) -> dict:
    """What the ``scale`` design (a name in `SCALES` or such settings) would report if the
    paper's fractions were the truth: binomial draws of the paper's not-learned fractions
    at the design's learning rates, delays and seeds, through this reproduction's own
    `boundary_fit`. Returns ``beta`` and ``t0`` (one per learning rate) as ``(median, 5%,
    95%)``, the paper's counts at the design's points (None off the paper's grid) and
    ``cells``, the per-point G-test's false alarm rate and resolution in words."""
    settings = scale_settings(scale)
    lrs, delays, seeds = settings["lrs"], settings["delays_ms"], settings["seeds"]
    grid = paper_grid()
    truth = grid.at(lrs, delays)
    rng = np.random.default_rng(seed)
    betas, boundaries = [], []
    for _ in range(draws):
        t0, fit = boundary_fit(lrs, delays, binomial_fractions(truth, seeds, rng))
        betas.append(-fit.beta)
        boundaries.append(t0)
    boundaries = np.array(boundaries, dtype=float)
    result = {"beta": interval(betas), "t0": [interval(boundaries[:, i])
                                              for i in range(len(lrs))],
              "paper_counts": None, "cells": "n/a: the points are not the paper's grid points",
              "settings": settings}
    if grid.on_grid(lrs, delays):
        false_alarm, shift = shift_resolution(truth, seeds, PAPER_SEEDS, draws, rng)
        result["paper_counts"] = np.round(truth * PAPER_SEEDS)
        result["cells"] = (f"false alarm {false_alarm:.2f}; detects a shift of every point's "
                           f"log-odds by {shift:g} in 80% of draws")
        result["resolution"] = shift
    return result


def design_check(scale: str | dict, draws: int = 200, seed: int = 0) -> list[dict]:
    """`simulate_design` as table rows: beta, T0 per learning rate, and the per-point
    G-test against the paper's fractions."""
    expected = simulate_design(scale, draws, seed)
    settings = expected["settings"]
    lrs, delays, seeds = settings["lrs"], settings["delays_ms"], settings["seeds"]
    design = (f"{len(lrs)} learning rates ({min(lrs):.3g}-{max(lrs):.3g}) x {len(delays)} "
              f"delays ({min(delays)}-{max(delays)} ms) x {seeds} seeds, {draws} draws; "
              f"training ~{estimated_minutes(settings):.0f} min on 2 cores")
    t0_rows, t0_resolved = [], []
    for lr, spread in zip(lrs, expected["t0"]):
        paper = paper_t0(float(lr))
        t0_rows.append(f"lr {lr:.3g}: {text(spread, 0)} ms" +
                       (f" [paper {paper:.0f}]" if np.isfinite(paper) else " [paper: none]"))
        if np.isfinite(paper):
            t0_resolved.append(resolves(paper, spread))
    cells = "G-test of the counts against the paper's over " \
        f"{len(lrs) * len(delays)} points: {expected['cells']}"
    return [
        design_row("not-learned fraction per (learning rate, delay) consistent with the "
                   "paper's", f"{PAPER_SEEDS} seeds per point", cells,
                   np.isfinite(expected.get("resolution", np.nan)) if
                   expected["paper_counts"] is not None else "n/a", design),
        design_row("critical delay T0 per learning rate", "paper's T0 per learning rate",
                   "; ".join(t0_rows), all(t0_resolved) if t0_resolved else "n/a", design),
        design_row("no-solution boundary eta_c ~ T_delay^-beta", f"beta = {PAPER_BETA[0]}",
                   f"beta = {text(expected['beta'])}",
                   resolves(PAPER_BETA[0], expected["beta"]), design),
    ]


def phase_of(networks, lr: float, delay: float) -> str:
    """The phase of one (learning rate, delay) point: no learning where most networks did
    not learn (unstable ones counted as not learned, as the paper counts them), else which
    mechanisms its learned networks use."""
    chosen = [n for n in networks if n["lr"] == lr and n["delay_ms"] == delay]
    if np.mean([n["outcome"] != LEARNED for n in chosen]) > 0.5:
        return "no learning"
    kinds = {n["mechanism"] for n in chosen if n["outcome"] == LEARNED}
    if kinds == {LIMIT_CYCLE}:
        return "limit cycles only"
    if LIMIT_CYCLE in kinds:
        return "both"
    return "slow points only" if kinds else "unstable"


def plot_phases(networks, rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {"no learning": "0.6", "limit cycles only": "C3", "both": "C2",
              "slow points only": "C0", "unstable": "C1"}
    lrs = sorted({n["lr"] for n in networks})
    delays = sorted({n["delay_ms"] for n in networks})
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for lr in lrs:
        for delay in delays:
            phase = phase_of(networks, lr, delay)
            axis.scatter(delay, lr, s=160, marker="s", color=colors[phase])
    for phase, color in colors.items():
        axis.scatter([], [], marker="s", color=color, label=phase)
    axis.set_yscale("log")
    axis.set_xlabel("delay [ms]")
    axis.set_ylabel("learning rate")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_title(rows[0]["bioplast"].split(" (")[0] + f" (paper {rows[0]['paper']})",
                   fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
