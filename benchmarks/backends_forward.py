"""Brian2 (cpp_standalone, cython) against torch on the CPU for a long forward simulation.

Simulates ``leaky_rate`` (noise off) for ``--steps`` steps of ``--trials`` trials with each
backend. Brian2 times are of a second call (the standalone build and the cython
compilation are cached by the first, warm-up call, whose time is printed too). Prints the
time of each and its ratio to torch, all measured in this process.

    python benchmarks/backends_forward.py [--units 100] [--trials 8] [--steps 10000]
"""

import argparse
import time

import numpy as np
import torch

import bioplast


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = bioplast.load_model("leaky_rate", n_units=args.units)
    params = model.init_params(0)
    inputs = np.random.default_rng(0).normal(size=(args.trials, args.steps, model.n_inputs))
    runs = {"torch": dict(backend="torch"),
            "brian2 cython": dict(backend="brian2", target="cython"),
            "brian2 cpp_standalone": dict(backend="brian2", target="cpp_standalone")}
    print(f"leaky_rate, N={args.units}, {args.trials} trials x {args.steps} steps, float64, "
          f"torch {torch.get_num_threads()} threads")
    times = {}
    for name, options in runs.items():
        first = timed(lambda: bioplast.simulate(model, params, inputs, noise=False, **options))
        times[name] = timed(lambda: bioplast.simulate(model, params, inputs, noise=False,
                                                      **options))
        print(f"{name:22s} {times[name]:7.2f} s (first call {first:6.2f} s)  ratio to torch "
              f"{times[name] / times['torch']:.2f}")


if __name__ == "__main__":
    main()
