"""A sweep re-run whose points are all finished against the first run, in one process.

Runs a small grid of ``protocols/quickstart.yaml`` (learning rates x seeds, few epochs) on a
LocalCluster into a fresh directory, then the same sweep again: the re-run finds every
shard finished, starts no cluster and only writes the combined file. Prints both times and
their ratio (issue goal: the re-run < 25% of the first run), then how long planning a
100 x 100 grid (learning rate x seed) takes and how many protocol loads it makes.

    python benchmarks/sweep_rerun.py [--seeds 4] [--epochs 3] [--workers 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import bioplast.protocol
from bioplast.sweep import Layout, run_sweep, survey

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = REPO / "protocols" / "quickstart.yaml"


def timed_sweep(grid, output, settings, workers):
    started = time.perf_counter()
    run_sweep(str(PROTOCOL), grid, output, base_settings=settings, workers=workers).close()
    return time.perf_counter() - started


def planning_time(grid):
    """Seconds to survey ``grid`` (no shards exist) and the protocol loads it made."""
    loads = []
    load = bioplast.protocol.load_protocol

    def counting(*args, **kwargs):
        loads.append(args)
        return load(*args, **kwargs)
    bioplast.protocol.load_protocol = counting
    try:
        with tempfile.TemporaryDirectory() as directory:
            started = time.perf_counter()
            survey(str(PROTOCOL), grid, {}, Path(directory),
                   Layout(tuple(map(len, grid.values()))), [])
            return time.perf_counter() - started, len(loads)
    finally:
        bioplast.protocol.load_protocol = load


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per learning rate (x 2)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    grid = {"rule.optimizer.lr": [0.003, 0.01], "seed": list(range(args.seeds))}
    settings = {"training.epochs": args.epochs}
    points = 2 * args.seeds
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "sweep.nc"
        first = timed_sweep(grid, output, settings, args.workers)
        rerun = timed_sweep(grid, output, settings, args.workers)
    print(f"first run: {first:.1f} s for {points} points ({args.epochs} epochs, "
          f"{args.workers} workers, cluster start-up included)")
    print(f"re-run, every shard finished: {rerun:.2f} s")
    print(f"re-run / first run: {rerun / first:.3f} (goal < 0.25)")
    seconds, loads = planning_time({"rule.optimizer.lr": [0.001 * (k + 1) for k in range(100)],
                                    "seed": list(range(100))})
    print(f"planning a 100 x 100 grid (learning rate x seed): {seconds:.1f} s, "
          f"{loads} protocol loads for 10000 points")


if __name__ == "__main__":
    main()
