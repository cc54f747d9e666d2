"""Reproductions of the source papers' headline results: run one, print its table rows.

    python benchmarks/reproduce.py phases [--smoke | --reduced | --full] [--workers 2] [--out DIR]
    python benchmarks/reproduce.py --markdown DIR [DIR ...] [--to FILE]   # REPRODUCTIONS.md

``phases`` (Kurtkaya, Dinc et al., ICML 2025): delayed-cue networks (protocols/papers/
phases.yaml) over a grid of learning rates x delays x seeds, one Dask sweep per learning
rate (its epochs are max(1000, 30/lr), as in the paper). Each network is classified as
learned / not learned / unstable (`bioplast.analysis.learning`), each learned one as a limit
cycle or slow-point manifold from its test trials continued for 9x their length with zero
input (`bioplast.analysis.dynamics`). Per learning rate, the critical delay T0 of the
no-solution boundary; over learning rates, beta of eta_c ~ T0^-beta with its 95% interval
(paper: 2.72 +- 0.07). Writes ``rows.json`` (the table rows), ``networks.json`` and
``phases.png`` into ``--out`` (default ``reproductions/phases-<scale>``) and prints the rows.
Re-running the same command reuses finished sweep shards.

``--markdown`` writes REPRODUCTIONS.md from the ``rows.json`` of the given output
directories (the numbers are never typed), with the machine they ran on, and copies their
figures to docs/reproductions/.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bioplast.analysis.analyze import result_model  # noqa: E402
from bioplast.analysis.dynamics import (LIMIT_CYCLE, SLOW_POINT, classify_mechanism,  # noqa: E402
                                        extended_run)
from bioplast.analysis.learning import (LEARNED, NOT_LEARNED, critical_delay,  # noqa: E402
                                        learning_outcome, power_law)
from bioplast.results import INITIAL_PREFIX, select_network  # noqa: E402
from bioplast.sweep import run_sweep  # noqa: E402

PAPER_BETA = (2.72, 0.07)
PHASES_SCALES = {
    "smoke": dict(lrs=[0.5, 0.05], delays_ms=[0, 40], seeds=2, n_units=16,
                  epochs=lambda lr: 15),
    # sized for ~1 h on 2 cores (cost ~ epochs x trial steps; measured: a 4-seed ensemble
    # runs 1000 epochs of a 16-step trial in ~2.5 min on one core)
    "reduced": dict(lrs=list(np.logspace(-0.5, -1.5, 5)), delays_ms=[0, 40, 80, 120, 200],
                    seeds=4, n_units=100, epochs=lambda lr: max(1000, int(round(30 / lr)))),
    "full": dict(lrs=list(np.logspace(-1, -3, 15)), delays_ms=list(range(0, 401, 20)),
                 seeds=100, n_units=100, epochs=lambda lr: max(1000, int(round(30 / lr)))),
}


def classify_network(network) -> tuple[str, str | None]:
    """``(learning outcome, mechanism or None)`` of one trained network's dataset."""
    outcome = learning_outcome(network["accuracy"].mean("head", skipna=True).values)
    if outcome != LEARNED:
        return outcome, None
    model, params = result_model(network)
    inputs = network["inputs"].transpose("trial", "time", "input").values
    initial = {name: network[INITIAL_PREFIX + name].values for name in model.state_names}
    run = extended_run(model, params, inputs, initial)
    kinds = classify_mechanism(run, trial_steps=inputs.shape[1])["mechanism"].values
    return outcome, LIMIT_CYCLE if np.mean(kinds == LIMIT_CYCLE) > 0.5 else SLOW_POINT


def phases(scale: str, out: Path, workers: int) -> list[dict]:
    settings = PHASES_SCALES[scale]
    protocol = REPO / "protocols" / "papers" / "phases.yaml"
    delays = [f"{d} ms" for d in settings["delays_ms"]]
    networks = []
    started = time.perf_counter()
    for index, lr in enumerate(settings["lrs"]):
        base = {"rule.optimizer.lr": float(lr), "training.epochs": settings["epochs"](lr),
                "model.n_units": settings["n_units"]}
        print(f"lr {lr:.4g}: {len(delays)} delays x {settings['seeds']} seeds, "
              f"{base['training.epochs']} epochs", flush=True)
        dataset = run_sweep(str(protocol), {"task.delay": delays,
                                            "seed": list(range(settings["seeds"]))},
                            out / f"lr{index}.nc", base_settings=base, workers=workers)
        for delay, delay_ms in zip(delays, settings["delays_ms"]):
            for seed in range(settings["seeds"]):
                outcome, mechanism = classify_network(select_network(dataset, delay=delay,
                                                                     seed=seed))
                networks.append({"lr": float(lr), "delay_ms": delay_ms, "seed": seed,
                                 "outcome": outcome, "mechanism": mechanism})
    elapsed = time.perf_counter() - started
    rows = summarize(networks, settings, scale, elapsed, workers)
    (out / "networks.json").write_text(json.dumps(networks, indent=1))
    (out / "rows.json").write_text(json.dumps(rows, indent=1))
    plot_phases(networks, rows, out / "phases.png")
    return rows


def summarize(networks, settings, scale, elapsed, workers) -> list[dict]:
    """Table rows: beta of the no-solution boundary, the phases seen, the runtime."""
    lrs, delays = settings["lrs"], np.array(settings["delays_ms"], dtype=float)
    boundaries = []
    for lr in lrs:
        fraction = [np.mean([n["outcome"] == NOT_LEARNED for n in networks
                             if n["lr"] == float(lr) and n["delay_ms"] == d]) for d in delays]
        boundaries.append(critical_delay(delays, np.array(fraction)))
    fit = power_law(np.array(boundaries), np.array(lrs, dtype=float))
    beta, low, high = -fit.beta, -fit.high, -fit.low
    phases_seen = sorted({phase_of(networks, float(lr), d) for lr in lrs for d in delays})
    command = f"python benchmarks/reproduce.py phases --{scale} --workers {workers}"
    overlap = "yes" if low <= PAPER_BETA[0] + PAPER_BETA[1] and \
        high >= PAPER_BETA[0] - PAPER_BETA[1] else "no"
    return [
        {"claim": "no-solution boundary eta_c ~ T_delay^-beta",
         "paper": f"beta = {PAPER_BETA[0]} +- {PAPER_BETA[1]}",
         "bioplast": f"beta = {beta:.2f} +- {fit.stderr:.2f} (95%: {low:.2f} to {high:.2f}; "
                     f"R^2 {fit.r2:.2f}; {fit.n} learning rates with a boundary)",
         "agrees": overlap, "command": command, "runtime_s": round(elapsed, 1)},
        {"claim": "three phases: both mechanisms, limit cycles only, no learning",
         "paper": "all three (Fig. 4G-I)", "bioplast": ", ".join(phases_seen),
         "agrees": "yes" if {"both", "limit cycles only", "no learning"} <= set(phases_seen)
         else "no", "command": command, "runtime_s": round(elapsed, 1)},
    ]


def phase_of(networks, lr: float, delay: float) -> str:
    chosen = [n for n in networks if n["lr"] == lr and n["delay_ms"] == delay]
    if np.mean([n["outcome"] == NOT_LEARNED for n in chosen]) > 0.5:
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
    figure, axis = plt.subplots(figsize=(6, 4.5))
    for lr in lrs:
        for delay in delays:
            phase = phase_of(networks, lr, delay)
            axis.scatter(delay, lr, s=160, marker="s", color=colors[phase])
    for phase, color in colors.items():
        axis.scatter([], [], marker="s", color=color, label=phase)
    axis.set_yscale("log")
    axis.set_xlabel("delay [ms]")
    axis.set_ylabel("learning rate")
    axis.legend(fontsize=7, loc="upper right")
    axis.set_title(rows[0]["bioplast"].split(" (")[0] + f" (paper {rows[0]['paper']})",
                   fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine() -> str:
    """What the rows were measured on."""
    import os
    import platform

    import torch
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30 \
        if hasattr(os, "sysconf") else float("nan")
    return (f"{os.cpu_count()} CPU cores ({model}), {memory:.0f} GiB, no GPU; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def write_markdown(directories: list[Path], path: Path = REPO / "REPRODUCTIONS.md") -> Path:
    """REPRODUCTIONS.md from the rows of finished runs, figures copied to docs/ beside it."""
    import shutil
    figures = path.parent / "docs" / "reproductions"
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# Reproductions", "",
             "Generated by `python benchmarks/reproduce.py --markdown ...` from the rows that "
             "`benchmarks/reproduce.py` printed and saved; do not edit by hand.", "",
             f"Machine: {machine()}.", ""]
    for directory in directories:
        rows = json.loads((directory / "rows.json").read_text())
        lines += [f"## {directory.name}", "",
                  "| claim | paper | bioplast | agrees | command | runtime |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['claim']} | {r['paper']} | {r['bioplast']} | {r['agrees']} | "
                  f"`{r['command']}` | {r['runtime_s'] / 60:.1f} min |" for r in rows]
        for figure in sorted(directory.glob("*.png")):
            target = figures / f"{directory.name}-{figure.name}"
            shutil.copyfile(figure, target)
            lines += ["", f"![{directory.name}]({target.relative_to(path.parent)})"]
        notes = directory / "notes.md"
        if notes.exists():
            lines += ["", notes.read_text().strip()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def main():
    if "--markdown" in sys.argv:  # --markdown DIR [DIR ...] [--to FILE]
        arguments = sys.argv[sys.argv.index("--markdown") + 1:]
        target = REPO / "REPRODUCTIONS.md"
        if "--to" in arguments:
            target = Path(arguments[arguments.index("--to") + 1])
            arguments = arguments[:arguments.index("--to")]
        print(f"wrote {write_markdown([Path(p) for p in arguments], target)}")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["phases"])
    scale = parser.add_mutually_exclusive_group()
    for name in ("smoke", "reduced", "full"):
        scale.add_argument(f"--{name}", dest="scale", action="store_const", const=name)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scale_name = args.scale or "reduced"
    out = args.out or REPO / "reproductions" / f"{args.name}-{scale_name}"
    out.mkdir(parents=True, exist_ok=True)
    rows = phases(scale_name, out, args.workers)
    print("| claim | paper | bioplast | agrees | command | runtime |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['claim']} | {row['paper']} | {row['bioplast']} | {row['agrees']} | "
              f"`{row['command']}` | {row['runtime_s'] / 60:.1f} min |")


if __name__ == "__main__":
    main()
