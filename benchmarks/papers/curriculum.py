"""Curricula and timescales (Khajehabdollahi, Zeraati et al., ICLR 2024).

The authors' network exactly (models/timescale_rnn.yaml: per-unit trainable tau clamped
at 1 step in the update, LeakyReLU, input and recurrent biases and readouts initialised as
nn.Linear initialises them) on the N-parity curriculum with the paper's optimizer (SGD lr
0.05, Nesterov momentum 0.1, clip 2, level up at 98% on ``eval_batches x eval_batch_size``
fresh test trials), three conditions with the same seeds and the same budget of updates:
multi-head with trained tau, single-head with trained tau, single-head with tau = 1 fixed
(protocols/nparity_multi_head.yaml and nparity_single_head.yaml). One Dask sweep over seeds
per condition; the parameters are kept at every passed level (``record.levels``).

Per network: the largest N passed; the mean effective tau (max(tau, 1), as the update
uses it) at every passed level; the network's
timescale at (up to ``timescale_levels`` of) its passed levels, from autocorrelations of its
activity driven as in training (``drive="task"``: one bit probability p ~ U(0, 1) per
trial, as the paper; `bioplast.analysis.analyze`: mean over units of the fitted
timescale, in steps). Rows: max N per condition and their ordering (one-sided
Mann-Whitney tests), the rank correlation of mean tau with N (single-head) and the change of
mean tau (multi-head), the rank correlation of the network timescale with N.

Robustness (`bioplast.analysis.robustness`, the paper's claims that multi-head networks are
more robust to ablation and perturbation and generalize beyond their trained N): every
multi-head and single-head network with trained tau at the matched N, the largest N all of
them passed, with its parameters and test batches of the epoch it passed N (so the conditions
are compared on the same task; the multi-head networks got there in fewer updates). Per
network, for the accuracy at N (the head trained for N): the area under the ablation curve
(random orders, over the fraction of units silenced), the mean accuracy right after weight
noise over the noise sizes, the rule updates to recover from it (mean over the noise sizes, a
network not back within the budget counted at the budget), and the mean accuracy at N+1 ...
N+``beyond`` (read by the head for N). Each row: one-sided Mann-Whitney test of multi-head
against single-head. Writes ``rows.json``, ``networks.json`` and ``curriculum.png``;
`resummarize` makes them again from a finished run's files (the robustness from its result
files), without training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import xarray as xr
from scipy import stats
from scipy.integrate import trapezoid

from bioplast.analysis.analyze import analyze, result_model
from bioplast.analysis.robustness import PAPER_NOISE, RobustnessSettings
from bioplast.results import LEVEL_PREFIX, network_at_level, select_network
from bioplast.sweep import run_sweep

from .common import (REPO, command, design_row, greater, map_in_processes, row, save,
                     spread)
from .design import false_pass, ordering_power

CITATION = ('Khajehabdollahi, Zeraati, Giannakakis, Schäfer, Martius, Levina, "Emergent '
            'mechanisms for long timescales depend on training curriculum and affect performance '
            'in memory tasks", ICLR 2024, arXiv 2309.12927; code LevinaLab/rnn_timescale_public')
MULTI, SINGLE, FIXED = "multi-head, trained tau", "single-head, trained tau", \
    "single-head, tau = 1"
CONDITIONS = {
    MULTI: ("nparity_multi_head.yaml", {}),
    SINGLE: ("nparity_single_head.yaml", {}),
    FIXED: ("nparity_single_head.yaml", {"model.parameters.tau.init": 1,
                                         "model.parameters.tau.trainable": False}),
}
MODEL = "timescale_rnn"  # the authors' RNN_Mod, exactly (the protocols' leaky_tau projects
# tau onto >= 1 after each update and starts its one bias at 0)
#: Max N of the paper's 4 networks per condition (notebook Fig_trained_tau_loc_nonlin_correct;
#: N = 500 units, up to 1000 epochs of 600 updates of batch 256).
PAPER_MAX_N = {MULTI: [100, 101, 100, 101], SINGLE: [37, 33, 35, 35], FIXED: [24, 25, 24, 26]}
SCALES = {
    # threshold 0.6: every smoke network passes N = 2, so the robustness rows are measured
    "smoke": dict(seeds=2, n_units=16, epochs=3, steps_per_epoch=8, batch_size=32,
                  eval_batches=2, eval_batch_size=32, threshold=0.6, timescale_steps=300,
                  timescale_trials=2, timescale_levels=2,
                  robustness=RobustnessSettings(ablation_steps=3, repeats=1, noise=(0.1, 1.0),
                                                recovery_updates=4, recovery_every=2,
                                                beyond=2)),
    # sized for under 1 h on 2 cores (the first reduced run, 250 epochs of 50 updates with
    # 512 test trials per check: 36.7 min): the same 12,500 updates, the level-up checked
    # every 100 updates on 4096 test trials (a network at 97% passes a check with chance
    # 3e-5; on 512 trials 0.1, see --design-check)
    "reduced": dict(seeds=4, n_units=64, epochs=125, steps_per_epoch=100, batch_size=64,
                    eval_batches=4, eval_batch_size=1024, threshold=0.98,
                    timescale_steps=2000, timescale_trials=5, timescale_levels=6,
                    robustness=RobustnessSettings(repeats=3, noise=PAPER_NOISE, beyond=5)),
    "full": dict(seeds=4, n_units=500, epochs=1000, steps_per_epoch=600, batch_size=256,
                 eval_batches=50, eval_batch_size=256, threshold=0.98,
                 timescale_steps=100000, timescale_trials=10, timescale_levels=100,
                 robustness=RobustnessSettings(repeats=10, noise=PAPER_NOISE, beyond=10)),
}


def settings_of(scale: dict) -> dict:
    """The protocol edits of a scale (every condition gets the same budget)."""
    return {"model.file": MODEL, "model.n_units": scale["n_units"],
            "training.epochs": scale["epochs"],
            "training.steps_per_epoch": scale["steps_per_epoch"],
            "training.batch_size": scale["batch_size"],
            "training.eval_batches": scale["eval_batches"],
            "training.eval_batch_size": scale["eval_batch_size"],
            "task.threshold": scale["threshold"], "training.checkpoint_every": 5,
            "record.levels": True}


def network_summary(network, scale: dict, seed: int) -> dict:
    """Max N passed, mean effective tau and the network timescale (steps) per passed
    level (tau in steps; the effective tau is max(tau, 1), as the update uses it)."""
    if LEVEL_PREFIX + "epoch" not in network:
        levels = np.array([], dtype=int)
    else:
        levels = network[LEVEL_PREFIX + "epoch"].dropna("passed_level")[
            "passed_level"].values.astype(int)
    model, params = result_model(network)
    initial_tau = float(np.mean(effective_tau(model.init_params(seed)["tau"])))
    mean_tau = [float(np.mean(effective_tau(
        network[LEVEL_PREFIX + "tau"].sel(passed_level=n).values))) for n in levels]
    chosen = levels[np.unique(np.linspace(0, len(levels) - 1,
                                          min(len(levels), scale["timescale_levels"]))
                              .round().astype(int))] if len(levels) else levels
    timescales = {}
    for n in chosen:
        analysis = analyze(network_at_level(network, int(n)), do_dynamics=False,
                           do_geometry=False, steps=scale["timescale_steps"],
                           trials=scale["timescale_trials"], drive="task", seed=seed)
        timescales[int(n)] = float(analysis["mean_unit_tau"]) / model.dt
    first_n = int(network["level"].values[0])
    return {"seed": seed, "max_n": int(levels.max()) if len(levels) else first_n - 1,
            "levels": levels.tolist(), "mean_tau": mean_tau, "initial_mean_tau": initial_tau,
            "final_mean_tau": float(np.mean(effective_tau(params["tau"]))),
            "timescale_levels": sorted(timescales), "network_timescale":
                [timescales[n] for n in sorted(timescales)],
            "epochs": int(network.sizes["epoch"])}


def effective_tau(tau):
    """The time constant (steps) the update uses: ``max(tau, 1)`` (timescale_rnn clamps in
    its step, as the authors' code; leaky_tau keeps tau >= 1 by projection)."""
    return np.maximum(np.asarray(tau, dtype=float), 1.0)


def run(scale_name: str, out: Path, workers: int) -> list[dict]:
    scale = SCALES[scale_name]
    seeds = list(range(scale["seeds"]))
    started = time.perf_counter()
    trained = []
    for index, (condition, (protocol, edits)) in enumerate(CONDITIONS.items()):
        print(f"{condition}: {len(seeds)} seeds, {scale['epochs']} epochs of "
              f"{scale['steps_per_epoch']} updates", flush=True)
        dataset = run_sweep(str(REPO / "protocols" / protocol), {"seed": seeds},
                            out / f"condition{index}.nc",
                            base_settings={**settings_of(scale), **edits}, workers=workers)
        trained += [(condition, select_network(dataset, seed=seed).load(), seed)
                    for seed in seeds]
    print(f"timescales of {len(trained)} networks", flush=True)
    summaries = map_in_processes(network_summary, [(network, scale, seed)
                                                   for _, network, seed in trained], workers)
    networks = {condition: [] for condition in CONDITIONS}
    for (condition, _, _), summary in zip(trained, summaries):
        networks[condition].append(summary)
    return report(networks, scale_name, out, workers, time.perf_counter() - started)


def resummarize(scale_name: str, out: Path, workers: int) -> list[dict]:
    """The rows and figure of a finished run again, from its saved ``networks.json`` and
    result files (no training; the robustness is measured again from the result files; the
    runtime of the other rows is the run's)."""
    networks = json.loads((out / "networks.json").read_text())
    elapsed = json.loads((out / "rows.json").read_text())[0]["runtime_s"]
    return report(networks, scale_name, out, workers, elapsed)


def report(networks: dict, scale_name: str, out: Path, workers: int,
           elapsed: float) -> list[dict]:
    """Measure the robustness of ``networks`` from the result files in ``out`` (into each
    network's ``robustness``), `summarize`, save the rows and networks to ``out`` and draw
    the figure there; the rows (the robustness rows' runtime is the robustness step's)."""
    started = time.perf_counter()
    n = matched_n(networks)
    compared = [(condition, net) for condition in (MULTI, SINGLE)
                for net in networks[condition]] if n is not None else []
    results = map_in_processes(network_robustness, [
        (out / f"condition{list(CONDITIONS).index(condition)}.nc", net["seed"], n,
         SCALES[scale_name]["robustness"]) for condition, net in compared], workers)
    for (_, net), result in zip(compared, results):
        net["robustness"] = result
    rows = summarize(networks, scale_name, workers, elapsed,
                     time.perf_counter() - started)
    save(out, rows, networks)
    plot(networks, out / "curriculum.png")
    return rows


def matched_n(networks: dict) -> int | None:
    """The largest N every multi-head and single-head network with trained tau passed (the
    N their robustness is compared at), or None if one of them passed no level."""
    passed = [net["max_n"] for condition in (MULTI, SINGLE) for net in networks[condition]
              if net["levels"]]
    if len(passed) < len(networks[MULTI]) + len(networks[SINGLE]):
        return None
    return min(passed)


def network_robustness(path: Path, seed: int, n: int, settings: RobustnessSettings) -> dict:
    """The robustness of the network ``seed`` of the result at ``path`` as it was when it
    passed level ``n`` (its parameters then and its history up to that epoch, so it is
    evaluated at N = ``n`` on that epoch's test batches), for the accuracy of the head
    trained for ``n``: the ablation, perturbation and generalization curves and the
    statistics the rows compare (see the module docstring)."""
    with xr.open_dataset(path) as dataset:
        network = select_network(dataset, seed=seed).load()
    epoch = int(network[LEVEL_PREFIX + "epoch"].sel(passed_level=n))
    at_n = network_at_level(network, n).isel(epoch=slice(0, epoch + 1))
    analysis = analyze(at_n, do_timescales=False, do_dynamics=False, do_geometry=False,
                       do_ablation=True, do_perturbation=True, do_generalization=True,
                       robustness=settings, seed=seed, where=str(path))
    ablation = analysis["ablation_accuracy"]
    head = ablation.attrs["newest_head"]
    fraction = analysis["silenced"].values / analysis.sizes["rank"]
    by_order = ablation.isel(head=head)
    random = [order for order in by_order["ablation_order"].values
              if str(order).startswith("random")]
    ablation_random = by_order.sel(ablation_order=random).mean("ablation_order").values
    noise = analysis["perturbation_accuracy"].isel(head=head).mean("repeat").values
    recovery = analysis["updates_to_recover"]
    budget = recovery.attrs["recovery_budget"]
    updates = recovery.fillna(budget).mean("repeat").values
    scales = analysis["noise_scale"].values
    beyond = analysis["generalization_n"].values > n
    return {"n": n, "silenced_fraction": fraction.tolist(),
            "ablation_auc": {str(order): float(trapezoid(by_order.sel(ablation_order=order)
                                                         .values, fraction))
                             for order in by_order["ablation_order"].values},
            "ablation_random": ablation_random.tolist(),
            "ablation_random_auc": float(trapezoid(ablation_random, fraction)),
            "noise_scale": scales.tolist(), "noise_accuracy": noise.tolist(),
            "noise_mean_accuracy": float(noise[scales > 0].mean()),
            "updates_to_recover": updates.tolist(), "recovery_budget": int(budget),
            "recovery_mean_updates": float(updates[scales > 0].mean()),
            "generalization_n": analysis["generalization_n"].values.tolist(),
            "generalization_accuracy": analysis["generalization_accuracy"].values.tolist(),
            "beyond_accuracy": float(analysis["generalization_accuracy"].values[beyond]
                                     .mean())}


def pooled_correlation(networks: list[dict], values: str, levels: str = "levels") -> float:
    """Spearman rank correlation of ``values`` with N over every network's passed levels."""
    n = [level for net in networks for level in net[levels]]
    v = [value for net in networks for value in net[values]]
    if len(set(n)) < 2 or len(set(v)) < 2:
        return float("nan")
    return float(stats.spearmanr(n, v).statistic)


def summarize(networks: dict, scale_name: str, workers: int, elapsed: float,
              robustness_s: float) -> list[dict]:
    """The table rows; ``elapsed``: the training and timescales' runtime, ``robustness_s``:
    the robustness step's (the robustness rows' runtime)."""
    command_text = command("curriculum", scale_name, workers)
    max_n = {c: [net["max_n"] for net in nets] for c, nets in networks.items()}
    rows = [row(f"max N passed, {condition}",
                f"{', '.join(map(str, PAPER_MAX_N[condition]))} (4 networks of 500 units, "
                "<= 600k updates of batch 256)",
                f"{spread(max_n[condition])}: {max_n[condition]}", "n/a", command_text,
                elapsed) for condition in CONDITIONS]
    p_multi = greater(max_n[MULTI], max_n[SINGLE])
    p_tau = greater(max_n[SINGLE], max_n[FIXED])
    ordered = np.mean(max_n[MULTI]) > np.mean(max_n[SINGLE]) > np.mean(max_n[FIXED])
    rows.append(row("max N: multi-head > single-head trained tau > single-head tau = 1",
                    "100-101 > 33-37 > 24-26",
                    f"means {np.mean(max_n[MULTI]):.1f} > {np.mean(max_n[SINGLE]):.1f} > "
                    f"{np.mean(max_n[FIXED]):.1f}: {'yes' if ordered else 'no'} (one-sided "
                    f"Mann-Whitney p = {p_multi:.3f}, {p_tau:.3f})", bool(ordered),
                    command_text, elapsed))
    rho_single = pooled_correlation(networks[SINGLE], "mean_tau")
    rows.append(row("mean tau grows with N, single-head (rank correlation > 0.5)",
                    "rises from ~1.5 towards 2 (Fig. 3)",
                    f"Spearman rho = {rho_single:.2f} over the passed levels of "
                    f"{len(networks[SINGLE])} networks", bool(rho_single > 0.5),
                    command_text, elapsed))
    change = [abs(net["final_mean_tau"] / net["initial_mean_tau"] - 1)
              for net in networks[MULTI]]
    rows.append(row("mean tau stays near its start, multi-head (change < 20%)",
                    "stays about 1-1.5 (Fig. 3)",
                    f"relative change {spread(change)}", bool(np.max(change) < 0.2),
                    command_text, elapsed))
    for condition in (MULTI, SINGLE):
        rho = pooled_correlation(networks[condition], "network_timescale", "timescale_levels")
        rows.append(row(f"network timescale grows with N, {condition}",
                        "grows with N in both curricula (Fig. 4)",
                        f"Spearman rho = {rho:.2f} (mean unit autocorrelation timescale at "
                        f"up to {SCALES[scale_name]['timescale_levels']} levels per network)",
                        bool(rho > 0), command_text, elapsed))
    return rows + robustness_rows(networks, scale_name, command_text, robustness_s)


#: the robustness claims: (claim, what the paper reports, statistic of
#: `network_robustness`, what it is, whether the multi-head networks' should be the larger)
ROBUSTNESS_CLAIMS = (
    ("ablation: multi-head more robust than single-head",
     "more stable to ablations (abstract); no per-network numbers published",
     "ablation_random_auc",
     "area under the accuracy curve over the fraction of units silenced, random orders",
     True),
    ("perturbation: multi-head more robust than single-head",
     "more stable to perturbations (abstract); no per-network numbers published",
     "noise_mean_accuracy", "mean accuracy right after weight noise over the noise sizes",
     True),
    ("recovery after perturbation: multi-head faster than single-head",
     "stability to perturbations (abstract; the authors' code retrains perturbed networks, "
     "analysis/perturbation_retraining); no per-network numbers published",
     "recovery_mean_updates", "mean rule updates to recover over the noise sizes, a network "
     "not back within the budget counted at the budget", False),
    ("generalization beyond the trained N: multi-head better than single-head",
     "generalizes better beyond the training regime (abstract); no per-network numbers "
     "published", "beyond_accuracy", "mean accuracy at N+1 ... N+{beyond} of the head for N",
     True),
)


def robustness_rows(networks: dict, scale_name: str, command_text: str,
                    runtime_s: float) -> list[dict]:
    """One row per `ROBUSTNESS_CLAIMS` entry: the statistic of the multi-head and the
    single-head networks at the matched N and a one-sided Mann-Whitney test of the claimed
    order (agrees: p < 0.05)."""
    settings = SCALES[scale_name]["robustness"]
    n = matched_n(networks)
    rows = []
    for claim, paper, key, statistic, multi_larger in ROBUSTNESS_CLAIMS:
        statistic = statistic.format(beyond=settings.beyond)
        if n is None:
            rows.append(row(claim, paper, "not measured: a network passed no "
                            "level, so there is no N every network passed", "n/a",
                            command_text, runtime_s))
            continue
        multi = [net["robustness"][key] for net in networks[MULTI]]
        single = [net["robustness"][key] for net in networks[SINGLE]]
        p = greater(multi, single) if multi_larger else greater(single, multi)
        reference = f"; the exact N-parity answer scores " \
            f"{np.mean([parity_read_beyond(k) for k in range(1, settings.beyond + 1)]):.3f}" \
            if key == "beyond_accuracy" else ""
        rows.append(row(
            f"{claim} ({statistic}; at the matched N)", paper,
            f"at N = {n} (the largest N every network passed): multi-head {spread(multi)}, "
            f"single-head {spread(single)}{reference}; one-sided Mann-Whitney p = {p:.3f} "
            f"(the smallest p with {len(multi)} and {len(single)} networks: "
            f"{smallest_p(len(multi), len(single)):.3f})", bool(p < 0.05), command_text,
            runtime_s))
    return rows


def parity_read_beyond(k: int) -> float:
    """Accuracy at N + k of the exact N-parity answer on the task's trials (bits
    Bernoulli(p), p ~ U(0, 1) per trial): the answers differ by the parity of k older bits,
    even with probability 1/2 + (1 - 2p)^k / 2, on average over p 1/2 + 1/(2(k + 1)) for
    even k and 1/2 for odd k."""
    return 0.5 + (0.5 / (k + 1) if k % 2 == 0 else 0.0)


def smallest_p(first: int, second: int) -> float:
    """The smallest one-sided Mann-Whitney p-value two groups of these sizes can give
    (complete separation)."""
    return greater(np.arange(first) + second, np.arange(second))


def one_pair_out_of_order(seeds: int) -> float:
    """The one-sided Mann-Whitney p-value of two groups of ``seeds`` (at least 2) with one
    pair out of order: the larger group's smallest value just below the smaller group's
    largest."""
    larger = np.arange(seeds, 2 * seeds, dtype=float)
    larger[0] = seeds - 1.5
    return greater(larger, np.arange(seeds))


def design_check(scale_name: str, draws: int = 200, seed: int = 0) -> list[dict]:
    """What the ``scale_name`` design can resolve if the paper's numbers hold: the max-N
    ordering with the paper's per-network values as the truth (normal, their mean and
    spread) at the design's seeds, and how often a level is passed by chance (the
    level-up check on ``eval_batches x eval_batch_size`` test trials)."""
    scale = SCALES[scale_name]
    seeds = scale["seeds"]
    rng = np.random.default_rng(seed)
    means = [float(np.mean(PAPER_MAX_N[c])) for c in (MULTI, SINGLE, FIXED)]
    sds = [max(float(np.std(PAPER_MAX_N[c], ddof=1)), 0.5) for c in (MULTI, SINGLE, FIXED)]
    power = ordering_power(means, sds, seeds, draws, rng)
    updates = scale["epochs"] * scale["steps_per_epoch"]
    budget = f"{seeds} seeds per condition, {updates} updates of {scale['batch_size']}"
    at_paper_budget = "" if scale_name == "full" else \
        " (the paper's values hold at its budget of 600,000 updates, not at this one)"
    trials = scale["eval_batches"] * scale["eval_batch_size"]
    chance = false_pass(0.97, scale["threshold"], trials)
    ten = 1 - (1 - chance) ** 10
    return [
        design_row("max N: multi-head > single-head trained tau > single-head tau = 1",
                   "100-101 > 33-37 > 24-26", f"both one-sided Mann-Whitney tests p < 0.05 "
                   f"in {power:.0%} of {draws} draws{at_paper_budget}", bool(power >= 0.8),
                   budget),
        design_row("a level is passed only when learned",
                   f"level-up at accuracy > {scale['threshold']} on 12,800 test trials "
                   f"every 600 updates", f"a network at 97% true accuracy passes one check "
                   f"with chance {chance:.2g} ({ten:.2g} over 10 checks) on {trials} trials "
                   f"every {scale['steps_per_epoch']} updates", bool(chance < 0.01), budget),
        design_row("mean tau and network timescale trends with N", "curves (Fig. 3, 4)",
                   "no per-network numbers published: nothing to simulate", "n/a", budget),
    ] + [design_row(claim, paper, "no per-network numbers published: nothing to simulate; "
                    f"with {seeds} networks per condition the one-sided Mann-Whitney test "
                    f"gives p = {smallest_p(seeds, seeds):.3f} at complete separation, "
                    f"{one_pair_out_of_order(seeds):.3f} with one of the {seeds * seeds} "
                    "pairs out of order", "n/a", budget)
         for claim, paper, *_ in ROBUSTNESS_CLAIMS]


def plot(networks: dict, path: Path) -> None:
    """Max N, mean tau and network timescale per level; below, the robustness at the
    matched N (accuracy of the head for N) where it was measured."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 3, figsize=(12, 7.6))
    top, bottom = axes
    for index, (condition, nets) in enumerate(networks.items()):
        color = f"C{index}"
        top[0].scatter(np.full(len(nets), index), [n["max_n"] for n in nets], color=color)
        top[0].scatter([index + 0.2] * len(PAPER_MAX_N[condition]), PAPER_MAX_N[condition],
                       color=color, marker="x", alpha=0.5)
        for number, net in enumerate(nets):
            label = condition if number == 0 else None
            top[1].plot(net["levels"], net["mean_tau"], color=color, alpha=0.7, label=label)
            top[2].plot(net["timescale_levels"], net["network_timescale"], "o-",
                        color=color, alpha=0.7, label=label)
            if "robustness" in net:
                robust = net["robustness"]
                bottom[0].plot(robust["silenced_fraction"], robust["ablation_random"],
                               color=color, alpha=0.7, label=label)
                bottom[1].plot(robust["noise_scale"][1:], robust["noise_accuracy"][1:],
                               "o-", color=color, alpha=0.7, label=label)
                bottom[2].plot(robust["generalization_n"], robust["generalization_accuracy"],
                               "o-", color=color, alpha=0.7, label=label)
                bottom[2].axvline(robust["n"], color="0.5", linestyle=":")
    top[0].set_xticks(range(len(networks)), [c.replace(", ", "\n") for c in networks],
                      fontsize=7)
    top[0].set_yscale("log")
    top[0].set_ylabel("max N passed (o bioplast, x paper)")
    top[1].set_xlabel("N")
    top[1].set_ylabel("mean tau [steps]")
    top[2].set_xlabel("N")
    top[2].set_ylabel("network timescale [steps]")
    top[1].legend(fontsize=7)
    bottom[0].set_xlabel("fraction of units silenced (random orders)")
    bottom[0].set_ylabel("accuracy at the matched N")
    bottom[1].set_xscale("log")
    bottom[1].set_xlabel("weight noise / norm of the recurrent couplings")
    bottom[1].set_ylabel("accuracy right after the noise")
    bottom[2].set_xlabel("N (dotted: the matched N trained)")
    bottom[2].set_ylabel("accuracy (head for N; past the matched N, its)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
