"""The equation-compiled torch step against the same math written by hand, and its FLOP/s.

1. ``leaky_rate`` (``r += dt/tau (-r + tanh(W_rec r + W_in u + b))``, noise off) run by
   bioplast's compiled step (`TorchStepper.run`) and by a hand-written torch loop, forward
   (no grad) and forward + backward, for N in {64, 256, 1024}: ratio compiled / hand-written
   (issue goal <= 1.05).
2. Achieved FLOP/s of the compiled step at N=512, B=256 (one matmul of 2 B N^2 flops per step
   dominates; the step's other ~6 B N elementwise flops are counted too) against `torch.mm` of
   the same shapes (goal >= 0.6 of it).

Each time is the median of ``--repeats`` runs, both measured in this process, alternating.

    python benchmarks/torch_step.py [--trials 64] [--steps 100] [--repeats 7] [--threads 2]
"""

import argparse
import statistics
import time

import numpy as np
import torch

import bioplast
from bioplast.compile_torch import TorchStepper


def median_time(function, repeats):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def setup(n_units, trials, steps, dtype=torch.float32):
    model = bioplast.load_model("leaky_rate", n_units=n_units, sigma=0)
    params = {k: torch.tensor(np.array(v)[None], dtype=dtype).contiguous()
              for k, v in model.init_params(0).items()}
    rng = np.random.default_rng(0)
    inputs = torch.as_tensor(rng.normal(size=(trials, steps, model.n_inputs)), dtype=dtype)
    initial = torch.as_tensor(rng.normal(size=(1, trials, n_units)) * 0.1, dtype=dtype)
    return model, params, inputs, initial


def compiled_run(model, params, inputs, initial, grad):
    stepper = TorchStepper(model, params["W_rec"].dtype, "cpu", noise=False)
    leaves = {k: v.clone().requires_grad_(grad) for k, v in params.items()}

    def run():
        with torch.set_grad_enabled(grad):
            recorded, _ = stepper.run(stepper.bind(leaves), inputs, {"r": initial}, ["r"])
            if grad:
                recorded["r"].square().sum().backward()
    return run


def handwritten_run(model, params, inputs, initial, grad):
    """The same math and the same gradients (tau is a parameter too)."""
    leaves = {k: v[0].clone().requires_grad_(grad) for k, v in params.items()}
    dt = model.dt

    def run():
        with torch.set_grad_enabled(grad):
            w_rec, w_in, b, tau = leaves["W_rec"], leaves["W_in"], leaves["b"], leaves["tau"]
            r = initial[0]
            states = []
            for u in inputs.unbind(1):
                r = r + dt * (-r + torch.tanh(r @ w_rec.T + u @ w_in.T + b)) / tau
                states.append(r)
            trajectory = torch.stack(states, dim=1)
            if grad:
                trajectory.square().sum().backward()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
          f"{args.trials} trials x {args.steps} steps")
    for n_units in (64, 256, 1024):
        data = setup(n_units, args.trials, args.steps)
        for grad, label in ((False, "forward"), (True, "forward+backward")):
            compiled = median_time(compiled_run(*data, grad), args.repeats)
            handwritten = median_time(handwritten_run(*data, grad), args.repeats)
            print(f"N={n_units:5d} {label:17s} compiled {compiled * 1e3:8.2f} ms  hand-written "
                  f"{handwritten * 1e3:8.2f} ms  ratio {compiled / handwritten:.3f} "
                  "(goal <= 1.05)")
    n_units, trials, steps = 512, 256, 50
    model, params, inputs, initial = setup(n_units, trials, steps)
    step_time = median_time(compiled_run(model, params, inputs, initial, False),
                            args.repeats) / steps
    flops = 2 * trials * n_units ** 2 + 6 * trials * n_units
    a = torch.randn(trials, n_units)
    b = torch.randn(n_units, n_units)
    mm_time = median_time(lambda: [torch.mm(a, b) for _ in range(steps)], args.repeats) / steps
    mm_flops = 2 * trials * n_units ** 2
    print(f"N={n_units}, B={trials}: compiled step {flops / step_time / 1e9:.2f} GFLOP/s, "
          f"torch.mm {mm_flops / mm_time / 1e9:.2f} GFLOP/s, fraction "
          f"{(flops / step_time) / (mm_flops / mm_time):.2f} (goal >= 0.6)")


if __name__ == "__main__":
    main()
