"""A Dask sweep with 2 workers against 1 worker on the same grid.

Runs the same grid (learning rates x seeds of a small delayed-cue protocol, one point per
task: ``max_members=1``) on a LocalCluster with 1 worker and with 2 workers (1 torch thread
each), into fresh directories, and prints the speedup (issue goal >= 1.7x on 2 cores).
Cluster start-up is included: it is part of what a user waits for.

    python benchmarks/sweep_scaling.py [--points 8] [--epochs 20]
"""

import argparse
import tempfile
import time
from pathlib import Path

from bioplast.sweep import run_sweep

PROTOCOL = """\
name: sweep_scaling
seed: 0
model: {{file: leaky_rate, n_units: 64}}
task: {{name: delayed_cue, delay: 100 ms}}
rule: {{name: bptt, optimizer: {{name: adam, lr: 0.003}}}}
training: {{epochs: {epochs}, steps_per_epoch: 10, batch_size: 64, eval_batches: 1,
           alignment_every: null}}
backend: {{name: torch, dtype: float32}}
record: {{trials: 0}}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8, help="seeds per learning rate x 2")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    grid = {"rule.optimizer.lr": [0.001, 0.003], "seed": list(range(args.points // 2))}
    times = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as directory:
            protocol = Path(directory) / "p.yaml"
            protocol.write_text(PROTOCOL.format(epochs=args.epochs))
            started = time.perf_counter()
            run_sweep(str(protocol), grid, Path(directory) / "out.nc", workers=workers,
                      threads=1, max_members=1).close()
            times[workers] = time.perf_counter() - started
        print(f"{workers} worker(s): {times[workers]:.1f} s for {2 * (args.points // 2)} points")
    print(f"speedup 2 vs 1 workers: {times[1] / times[2]:.2f}x (goal >= 1.7x)")


if __name__ == "__main__":
    main()
