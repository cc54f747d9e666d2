"""Peak memory of one e-prop update and one BPTT update at trial lengths T = 100 and 2000.

e-prop carries eligibility traces forward, so its memory should not grow with T (goal:
peak at T = 2000 within 1.2x of T = 100); BPTT stores the unrolled graph and grows
linearly. Each measurement runs in a fresh process: the increase of the peak resident
memory (ru_maxrss) over the resident memory just before the update. Prints the ratios.

    python benchmarks/eprop_memory.py [--units 128] [--trials 16]
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, numpy as np, torch
import bioplast
from bioplast.compile_torch import TorchStepper
from bioplast.rules import RULES, TrainingContext
from bioplast.tasks import TASKS
rule_name, steps, units, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
model = bioplast.load_model("leaky_current", n_units=units, n_inputs=3, n_outputs=3)
task_class = TASKS.get("flip_flop")
task = task_class(task_class.Config(n_bits=3, duration=f"{steps} ms"), model.dt)
params = {k: torch.as_tensor(v[None], dtype=torch.float32) for k, v in model.init_params(0).items()}
context = TrainingContext(model, task, TorchStepper(model, torch.float32, "cpu", noise=False),
                          torch.Generator().manual_seed(0))
batch = task.sample(trials, np.random.default_rng(0))
initial = model.initial_state(trials, seed=0)
rule = RULES.get(rule_name)(RULES.get(rule_name).Config())
state = rule.init_state(context, params)
def resident_kib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() // 1024
before = resident_kib()
rule.update(context, params, batch, initial, task.initial_level(), state,
            rule.optimizer(context, params))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"increase_kib": max(peak - before, 1)}))
"""


def measure(rule: str, steps: int, units: int, trials: int) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, rule, str(steps), str(units),
                             str(trials)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["increase_kib"] / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    print(f"leaky_current, {args.units} units, {args.trials} trials, float32, one update")
    for rule in ("eprop", "bptt"):
        short, long = (measure(rule, steps, args.units, args.trials) for steps in (100, 2000))
        print(f"{rule:>6}: peak increase {short:8.1f} MiB at T=100, {long:8.1f} MiB at "
              f"T=2000, ratio {long / short:.2f}")


if __name__ == "__main__":
    main()
