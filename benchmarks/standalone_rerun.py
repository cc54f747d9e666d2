"""Brian2 cpp_standalone: a second run with new weights re-uses the build.

Measures, in one process with an empty cache directory, the wall time of the first
`simulate` call (code generation + compilation + run) and of a second call with new
weights, inputs and initial states (run only), and prints their ratio
(foundation issue goal: second / first < 0.2).

    python benchmarks/standalone_rerun.py [--model leaky_rate] [--units 100] [--trials 8] [--steps 200]
"""

import argparse
import os
import tempfile
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="leaky_rate")
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["BIOPLAST_CACHE_DIR"] = cache  # a cold build, whatever ran before
        import bioplast
        model = bioplast.load_model(args.model, n_units=args.units)
        rng = np.random.default_rng(0)
        times = []
        for seed in (0, 1):
            inputs = rng.normal(size=(args.trials, args.steps, model.n_inputs))
            started = time.perf_counter()
            bioplast.simulate(model, model.init_params(seed), inputs, "brian2",
                                   target="cpp_standalone", seed=seed, noise=False)
            times.append(time.perf_counter() - started)
        print(f"model {args.model}: {args.units} units, {args.trials} trials x {args.steps} steps")
        print(f"first run (build + run): {times[0]:.3f} s")
        print(f"second run, new weights: {times[1]:.3f} s")
        print(f"ratio second/first: {times[1] / times[0]:.4f}  (goal < 0.2)")


if __name__ == "__main__":
    main()
