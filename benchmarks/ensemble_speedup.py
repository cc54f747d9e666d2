"""An ensemble of E networks trained as one batched model vs training them one at a time.

Trains E members (N units each, BPTT with Adam on the delayed-cue task, float32) with
``training.members: E`` for a few updates, and ``--solo`` of the same members one after
another with the same settings; the sequential time of all E is the mean solo time x E
(extrapolated from the solo runs measured here, said in the output). Prints the speedup
(issue goal >= 50x at E=256, N=32).

    python benchmarks/ensemble_speedup.py [--members 256] [--units 32] [--updates 10] [--solo 8]
"""

import argparse
import time

import torch

from bioplast.protocol import load_protocol
from bioplast.training import train

PROTOCOL = """\
name: ensemble_speedup
seed: 0
model: {{file: leaky_rate, n_units: {units}, sigma: {sigma}}}
task: {{name: delayed_cue, delay: 100 ms}}
rule: {{name: bptt, optimizer: {{name: adam, lr: 0.003}}}}
training: {{epochs: 1, steps_per_epoch: {updates}, batch_size: 32, eval_batches: 1,
           alignment_every: null, members: {members}}}
backend: {{name: torch, dtype: float32}}
record: {{trials: 0}}
"""


def timed(protocol) -> float:
    started = time.perf_counter()
    train(protocol)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=256)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--solo", type=int, default=8, help="solo runs measured")
    parser.add_argument("--sigma", type=float, default=0.001,
                        help="the model's noise std (leaky_rate's default 0.001; 0: off)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = PROTOCOL.format(units=args.units, updates=args.updates, members=args.members,
                           sigma=args.sigma)
    timed(load_protocol(PROTOCOL.format(units=args.units, updates=1, members=2, sigma=0),
                        name="warm-up"))
    ensemble = timed(load_protocol(text, name="ensemble"))
    solo = [timed(load_protocol(text, {"seed": seed, "training.members": 1}, name="solo"))
            for seed in range(args.solo)]
    sequential = sum(solo) / len(solo) * args.members
    print(f"E={args.members} networks of N={args.units}, sigma={args.sigma}, {args.updates} "
          f"updates + 1 evaluation, {torch.get_num_threads()} threads")
    print(f"ensemble: {ensemble:.2f} s; one at a time: {sequential:.1f} s (mean of "
          f"{len(solo)} solo runs x {args.members}); speedup {sequential / ensemble:.1f}x "
          "(goal >= 50x)")


if __name__ == "__main__":
    main()
