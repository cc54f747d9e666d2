"""Time of one e-prop gradient estimate relative to one BPTT gradient (autograd) in the
same process: an ensemble of leaky current networks on 3-bit flip-flop trials of 100 steps,
float32, one torch thread, with and without temporal-consistency regularization (TCR adds
a learning signal that meets the traces of the step before). e-prop's cost per step is
dominated by propagating the (member, unit, trial, source) traces and contracting them
with the learning signal, both O(members x trials x units^2), like BPTT's matrix products,
but with more passes. Prints seconds per estimate and the ratio e-prop / BPTT.

    python benchmarks/eprop_speed.py [--units 32 64] [--members 20] [--trials 32]
"""

import argparse
import time

import numpy as np
import torch

import bioplast
from bioplast.compile_torch import TorchStepper
from bioplast.regularizers import REGULARIZERS
from bioplast.rules import RULES, TrainingContext
from bioplast.tasks import TASKS


def seconds_per_estimate(rule_name: str, context, params, batch, initial, level,
                         repeats: int = 3) -> float:
    rule = RULES.get(rule_name)(RULES.get(rule_name).Config())
    state = rule.init_state(context, params)
    rule.estimate(context, params, batch, initial, level, state)  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        rule.estimate(context, params, batch, initial, level, state)
    return (time.perf_counter() - started) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--trials", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task_class = TASKS.get("flip_flop")
    tcr = REGULARIZERS.get("temporal_consistency")
    print(f"leaky_current, {args.members} networks, {args.trials} trials of 100 steps, "
          "float32, one thread: seconds per gradient estimate")
    for units in args.units:
        model = bioplast.load_model("leaky_current", n_units=units, n_inputs=3, n_outputs=3)
        task = task_class(task_class.Config(n_bits=3, duration="100 ms"), model.dt)
        params = {name: torch.as_tensor(np.stack([model.init_params(seed)[name]
                                                  for seed in range(args.members)]),
                                         dtype=torch.float32)
                  for name in model.init_params(0)}
        batch = task.sample(args.trials, np.random.default_rng(0))
        initial = model.initial_state(args.trials, seed=0)
        for regularizers, label in (([], "no TCR"), ([tcr(tcr.Config(weight=1.0))], "TCR")):
            context = TrainingContext(model, task,
                                      TorchStepper(model, torch.float32, "cpu", noise=False),
                                      torch.Generator().manual_seed(0),
                                      regularizers=regularizers)
            bptt, eprop = (seconds_per_estimate(name, context, params, batch, initial,
                                                task.initial_level())
                           for name in ("bptt", "eprop"))
            print(f"{units:4d} units, {label:>6}: BPTT {bptt:.3f} s, e-prop {eprop:.3f} s, "
                  f"ratio {eprop / bptt:.2f}")


if __name__ == "__main__":
    main()
