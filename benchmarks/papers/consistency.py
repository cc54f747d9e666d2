"""Temporal-consistency regularization and abrupt learning (Haputhanthri, Storan, Jiang et
al. 2025).

3-bit flip-flop networks of leaky current units (protocols/papers/consistency.yaml) over
gains g x {no TCR, TCR} x seeds, for BPTT and for e-prop (symmetric feedback), one Dask sweep
per rule (g and the TCR weight vary between the members of its ensembles). Per network:
the epoch of the drop of the loss (on the fixed training batch, as the public code logs it:
``training.score_on: training``) below 10% of the loss of a silent network
(`bioplast.analysis.learning.drop_epoch`), whether it learned within the budget, and the
number of stable fixed points (`bioplast.analysis.dynamics.find_fixed_points`, zero input,
started from visited states) of the parameters kept before the drop (the last snapshot at
least ``gap`` epochs before it) and at the end. Rows: epochs to the drop without and with TCR
per rule and g (Wilcoxon signed-rank test over seeds, pairs with the same seed and
initialization; networks that never dropped count as their rule's budget + 1; the budgets
may differ between the rules, whose updates differ in cost), the fraction that
learned at the largest g, the stable fixed points before and after the drop. Writes
``rows.json``, ``networks.json`` and ``consistency.png``.

The paper's lambda, budgets and rule are not public. The only public code with this exact
TCR term (../shared/PAPERS.md section 1) uses lambda = 1e-4 and 1e-3, one fixed training
batch reused at every update, and ReduceLROnPlateau (factor 0.5, patience a tenth of the
budget): this reproduction follows it, with lambda in {1e-4, 1e-3, 1e-2} each compared
with no TCR (the same seeds and initializations), all reported. (The first reduced run
used lambda = 1 and fresh batches at a constant rate: TCR was a drag there.)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import stats

from bioplast.analysis.analyze import result_model
from bioplast.analysis.dynamics import find_fixed_points, starting_points
from bioplast.analysis.learning import drop_epoch, null_loss
from bioplast.protocol import load_protocol
from bioplast.results import INITIAL_PREFIX, network_at_epoch, select_network
from bioplast.simulation import simulate
from bioplast.sweep import run_sweep

from .common import PROTOCOLS, command, design_row, map_in_processes, row, save
from .design import fisher_resolution, paired_resolution

CITATION = ('Haputhanthri, Storan, Jiang, Raheja, Shai, Akengin, Miolane, Schnitzer, Dinc, '
            'Tanaka, "Understanding and controlling the geometry of memory organization in RNNs",'
            " 2025, arXiv 2502.07256; the paper's code is not public")
TCR_WEIGHTS = (1e-4, 1e-3, 1e-2)  # lambda; 0 = no TCR
DROP_FRACTION = 0.1  # the drop: loss below this fraction of a silent network's
RULES = {
    "bptt": {},
    "e-prop": {"rule": {"name": "eprop", "feedback": "symmetric", "update": "per_trial",
                        "optimizer": {"name": "adam", "lr": 0.001}, "grad_clip": 1.0}},
}
# epochs: the budget per rule, sized to the time a rule's update takes; patience: the plateau
# schedule's, in epochs (the public code: a tenth of its budget)
SCALES = {
    "smoke": dict(gains=[1.0, 3.0], seeds=2, n_units=16, epochs={"bptt": 4, "e-prop": 4},
                  patience={"bptt": 1, "e-prop": 1},
                  steps_per_epoch=5, snapshots_every=2, fixed_point_starts=8, gap=1),
    # 80 networks of 32 units per rule (no TCR and 3 lambdas x 2 gains x 10 seeds) on 2
    # workers. Budgets of 200 (BPTT) and 75 (e-prop) epochs took 33 + 27 min (62 min in
    # all): cut to 180 and 55, the patience kept at a tenth of 200 and 75, so that every
    # network trains as in that run, epoch for epoch, up to the shorter budget (BPTT
    # networks at g = 1 crossed by epoch 165 there, e-prop ones nowhere)
    "reduced": dict(gains=[1.0, 3.0], seeds=10, n_units=32,
                    epochs={"bptt": 180, "e-prop": 55}, patience={"bptt": 20, "e-prop": 7},
                    steps_per_epoch=20, snapshots_every=5, fixed_point_starts=64, gap=5),
    "full": dict(gains=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0], seeds=20, n_units=100,
                 epochs={"bptt": 1000, "e-prop": 1000}, patience={"bptt": 100, "e-prop": 100},
                 steps_per_epoch=20, snapshots_every=10, fixed_point_starts=128, gap=10),
}


def stable_fixed_points(network, epoch: int | None, starts: int, seed: int) -> int:
    """Stable fixed points (zero input) of a network's parameters after ``epoch`` (None:
    the final ones), searched from states it visits on its test trials."""
    if epoch is not None:
        network = network_at_epoch(network, epoch)
    model, params = result_model(network)
    inputs = network["inputs"].transpose("trial", "time", "input").values
    initial = {name: network[INITIAL_PREFIX + name].values for name in model.state_names}
    run = simulate(model, params, inputs, initial_state=initial, record=model.state_names,
                   noise=False)
    states = np.concatenate([run[name].transpose("trial", "time", "unit").values
                             for name in model.state_names], axis=-1)
    points = find_fixed_points(model, params, starting_points(states, starts,
                                                              np.random.default_rng(seed)))
    return int(np.sum((points["stable"].values == 1) & (points["kind"].values == "fixed")))


def network_summary(network, reference: float, scale: dict, seed: int) -> dict:
    loss = network["eval_loss"].values
    drop = drop_epoch(loss, reference, DROP_FRACTION)
    ratio = loss / reference
    summary = {"seed": seed, "drop_epoch": drop, "learned": bool(np.isfinite(drop)),
               "final_loss_ratio": float(ratio[np.isfinite(ratio)][-1])
               if np.isfinite(ratio).any() else float("nan"),
               "loss_ratio": [round(float(value), 5) for value in ratio],  # per epoch
               "status": str(network.attrs.get("status")),
               "fixed_before": None, "fixed_after": None}
    if np.isfinite(drop) and "snapshot_epoch" in network.coords:
        kept = network["snapshot_epoch"].values
        before = kept[kept <= drop - scale["gap"]]
        if before.size:
            summary["fixed_before"] = stable_fixed_points(network, int(before[-1]),
                                                          scale["fixed_point_starts"], seed)
            summary["fixed_after"] = stable_fixed_points(network, None,
                                                         scale["fixed_point_starts"], seed)
    return summary


def protocol_settings(scale: dict, rule: str) -> dict:
    """The protocol edits of one rule's sweep: the scale's sizes, the public code's fixed
    training batch and plateau schedule (the scale's patience)."""
    epochs = scale["epochs"][rule]
    schedule = {"kind": "plateau", "factor": 0.5, "patience": scale["patience"][rule]}
    edits = {"model.n_units": scale["n_units"],
             "training.steps_per_epoch": scale["steps_per_epoch"],
             "record.snapshots_every": scale["snapshots_every"], "training.epochs": epochs,
             "training.fixed_batch": True}
    rule_block = RULES[rule].get("rule")
    if rule_block is None:
        edits["rule.optimizer.schedule"] = schedule
    else:
        edits["rule"] = {**rule_block, "optimizer": {**rule_block["optimizer"],
                                                     "schedule": schedule}}
    return edits


def run(scale_name: str, out: Path, workers: int) -> list[dict]:
    scale = SCALES[scale_name]
    protocol = PROTOCOLS / "consistency.yaml"
    reference = null_loss(load_protocol(protocol, {"model.n_units": scale["n_units"]}).task,
                          batch_size=1024)
    seeds = list(range(scale["seeds"]))
    weights = [0.0, *TCR_WEIGHTS]
    started = time.perf_counter()
    trained = []
    for index, rule in enumerate(RULES):
        print(f"{rule}: {len(scale['gains'])} gains x lambda {weights} x {len(seeds)} seeds, "
              f"{scale['epochs'][rule]} epochs", flush=True)
        dataset = run_sweep(str(protocol), {"model.couplings.W_rec.init.gain": scale["gains"],
                                            "regularizers.0.weight": weights,
                                            "seed": seeds},
                            out / f"rule{index}.nc",
                            base_settings=protocol_settings(scale, rule), workers=workers)
        for gain in scale["gains"]:
            for weight in weights:
                for seed in seeds:
                    trained.append(({"rule": rule, "gain": gain, "weight": weight},
                                    select_network(dataset, gain=gain, weight=weight,
                                                   seed=seed).load(), seed))
    print(f"fixed points of {len(trained)} networks", flush=True)
    summaries = map_in_processes(network_summary, [(network, reference, scale, seed)
                                                   for _, network, seed in trained], workers)
    networks = [{**labels, **summary} for (labels, _, _), summary in zip(trained, summaries)]
    elapsed = time.perf_counter() - started
    rows = summarize(networks, scale, scale_name, workers, elapsed)
    save(out, rows, networks)
    plot(networks, scale, out / "consistency.png")
    return rows


def _chosen(networks, **where) -> list[dict]:
    return sorted([n for n in networks if all(n[k] == v for k, v in where.items())],
                  key=lambda n: n["seed"])


def summarize(networks, scale, scale_name, workers, elapsed) -> list[dict]:
    """Rows per rule, gain and lambda (each against no TCR on the same seeds): epochs to
    the drop (Wilcoxon signed-rank over seed pairs), the fraction that learns at the
    largest g, and the stable fixed points before and after the drop."""
    command_text = command("consistency", scale_name, workers)
    rows = []
    for rule in RULES:
        censored = scale["epochs"][rule] + 1  # never dropped: after the budget
        for gain in scale["gains"]:
            without = _drop_epochs(networks, censored, rule=rule, gain=gain, weight=0.0)
            for weight in TCR_WEIGHTS:
                with_tcr = _drop_epochs(networks, censored, rule=rule, gain=gain,
                                        weight=weight)
                differs = without != with_tcr
                p = float(stats.wilcoxon(without[differs], with_tcr[differs]).pvalue) \
                    if differs.sum() >= 2 else float("nan")
                learned = (int(np.sum(without < censored)), int(np.sum(with_tcr < censored)))
                rows.append(row(
                    f"epochs to the drop, {rule}, g = {gain:g}, lambda = {weight:g}: TCR "
                    "shortens it", "shorter with TCR (no numbers public)",
                    f"median {np.median(without):g} without, {np.median(with_tcr):g} with TCR "
                    f"(not learned = {censored}; learned {learned[0]}/{len(without)}, "
                    f"{learned[1]}/{len(with_tcr)}; Wilcoxon p = {p:.3g})",
                    bool(np.median(with_tcr) < np.median(without) and p < 0.05),
                    command_text, elapsed))
    top = max(scale["gains"])
    for rule in RULES:
        for weight in TCR_WEIGHTS:
            fractions = [np.mean([n["learned"] for n in _chosen(networks, rule=rule, gain=top,
                                                                 weight=w)])
                         for w in (0.0, weight)]
            rows.append(row(f"networks that learn at the largest g = {top:g}, {rule}, "
                            f"lambda = {weight:g}",
                            "learning where it fails without TCR (chaotic g)",
                            f"{fractions[0]:.0%} without, {fractions[1]:.0%} with TCR",
                            bool(fractions[1] > fractions[0]), command_text, elapsed))
    pairs = [(n["fixed_before"], n["fixed_after"]) for n in networks
             if n["fixed_before"] is not None]
    if pairs:
        before, after = np.array(pairs, dtype=float).T
        summary = (f"mean {before.mean():.1f} before, {after.mean():.1f} after "
                   f"({len(pairs)} networks that dropped)")
        agrees = bool(after.mean() > before.mean())
    else:
        summary, agrees = "no network dropped with a snapshot before the drop", "n/a"
    rows.append(row("stable fixed points before and after the drop",
                    "attractors form with learning (3-bit flip-flop: 8)", summary, agrees,
                    command_text, elapsed))
    return rows


def _drop_epochs(networks, censored: int, **where) -> np.ndarray:
    """Epochs to the drop of the chosen networks in seed order (never: ``censored``)."""
    return np.array([n["drop_epoch"] if n["learned"] else censored
                     for n in _chosen(networks, **where)])


def design_check(scale_name: str, draws: int = 200, seed: int = 0) -> list[dict]:
    """What the ``scale_name`` design can resolve. The paper publishes no epoch counts,
    speed-ups or lambda, so there is nothing to simulate: the rows say how large an
    effect the design's tests can show at all (``draws`` and ``seed`` are unused: the
    answers are exact)."""
    scale = SCALES[scale_name]
    seeds = scale["seeds"]
    pairs = paired_resolution(seeds)
    learners = fisher_resolution(seeds)
    design = (f"{seeds} seeds per (rule, g, lambda), budgets "
              f"{', '.join(f'{rule} {epochs}' for rule, epochs in scale['epochs'].items())} "
              f"epochs of {scale['steps_per_epoch']} updates")
    return [
        design_row("epochs to the drop: TCR shortens it", "shorter with TCR (no numbers "
                   "public)", f"Wilcoxon p < 0.05 needs at least {pairs} of {seeds} seed "
                   "pairs to differ, all in one direction" if pairs else
                   f"Wilcoxon p < 0.05 is impossible with {seeds} pairs", bool(pairs), design),
        design_row("networks that learn at the largest g", "learning where it fails without "
                   "TCR (no numbers public)", f"Fisher p < 0.05 needs at least {learners} of "
                   f"{seeds} networks learning with TCR where none learns without" if learners
                   else f"Fisher p < 0.05 is impossible with {seeds} networks", bool(learners),
                   design),
        design_row("stable fixed points before and after the drop",
                   "attractors form with learning (3-bit flip-flop: 8)",
                   "no per-network numbers published: nothing to simulate", "n/a", design),
    ]


def plot(networks, scale, path: Path) -> None:
    """Top: epochs to the drop per network and lambda; bottom: the test loss over epochs as
    a fraction of a silent network's (median and quartiles over seeds), the drop line
    dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, len(RULES), figsize=(5 * len(RULES), 7.2), squeeze=False)
    weights = [0.0, *TCR_WEIGHTS]
    conditions = [(gain, weight) for gain in scale["gains"] for weight in weights]
    colors = {condition: f"C{index}" for index, condition in enumerate(conditions)}
    shades = {weight: ("0.4" if weight == 0 else f"C{2 + index}")
              for index, weight in enumerate(weights)}

    def label(weight):
        return "no TCR" if weight == 0 else f"lambda = {weight:g}"
    for axis, curves, rule in zip(axes[0], axes[1], RULES):
        censored = scale["epochs"][rule] + 1
        for offset, weight in enumerate(weights):
            for position, gain in enumerate(scale["gains"]):
                values = _drop_epochs(networks, censored, rule=rule, gain=gain, weight=weight)
                x = position + (offset - (len(weights) - 1) / 2) * 0.18
                axis.scatter(np.full(len(values), x), values, color=shades[weight], s=12,
                             label=label(weight) if position == 0 else None)
        axis.axhline(censored, color="k", lw=0.5, ls=":")
        axis.set_xticks(range(len(scale["gains"])), [f"g = {g:g}" for g in scale["gains"]])
        axis.set_ylabel("epochs to the drop (dotted: not learned)")
        axis.set_title(rule)
        axis.legend(fontsize=7)
        for gain, weight in conditions:
            ratios = np.array([n["loss_ratio"] for n in _chosen(networks, rule=rule, gain=gain,
                                                                weight=weight)], dtype=float)
            low, middle, high = np.nanpercentile(ratios, [25, 50, 75], axis=0)
            epochs = np.arange(ratios.shape[1])
            curves.plot(epochs, middle, color=colors[gain, weight],
                        label=f"g = {gain:g}, {label(weight)}")
            curves.fill_between(epochs, low, high, color=colors[gain, weight], alpha=0.2,
                                lw=0)
        curves.axhline(DROP_FRACTION, color="k", lw=0.5, ls="--")
        curves.set_yscale("log")
        curves.set_xlabel("epoch")
        curves.set_ylabel("test loss / silent network's")
        curves.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
