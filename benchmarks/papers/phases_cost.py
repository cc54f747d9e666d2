"""Minutes one delayed-cue network takes per 1000 epochs on one core, by delay: the cost
model (`phases.COST_PER_1000_EPOCHS`) from which the design check estimates a design's
runtime. 16 networks train as one ensemble, as the sweeps train them, with the paper's
scoring on the training batch.

    python benchmarks/papers/phases_cost.py [--epochs 20] [--delays 0,100,200]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import bioplast  # noqa: E402
from bioplast.ensembles import member_protocols  # noqa: E402
from bioplast.training import Trainer  # noqa: E402

PROTOCOL = Path(__file__).resolve().parent.parent.parent / "protocols" / "papers" / "phases.yaml"


def minutes_per_1000_epochs(delay_ms: float, epochs: int, members: int = 16) -> float:
    """Measured minutes per network per 1000 epochs at ``delay_ms``."""
    protocol = bioplast.load_protocol(PROTOCOL, {
        "task.delay": f"{delay_ms} ms", "training.members": members,
        "training.score_on": "training", "record.trials": 0})
    trainer = Trainer(member_protocols(protocol))
    trainer.train_epoch()  # warm-up: plans and memory
    started = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch()
    return (time.perf_counter() - started) / epochs / members * 1000 / 60


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--delays", default="0,100,200")
    args = parser.parse_args()
    torch.set_num_threads(1)
    delays = [float(d) for d in args.delays.split(",")]
    costs = [minutes_per_1000_epochs(d, args.epochs) for d in delays]
    for delay, cost in zip(delays, costs):
        print(f"delay {delay:g} ms: {cost:.3f} min per network per 1000 epochs")
    if len(delays) > 1:
        slope, intercept = np.polyfit(delays, costs, 1)
        print(f"cost model: {intercept:.3f} + {slope:.5f} * delay_ms")


if __name__ == "__main__":
    main()
