"""The papers' loop replicas of ``benchmarks/papers_loops.py``: a smoke run of the script,
and the gradients its replicas compute.

References: the smoke run checks the table's rows against the configurations the script
declares; each replica's gradient is checked against bioplast's own BPTT gradient for the
same network, weights, inputs and initial state in float64 (bioplast's loss, its
autograd through its own step, and the update `bioplast.training.Trainer` applies), or,
where bioplast computes something else (the paper's readout of the state at the start of a
step), against central finite differences.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import bioplast
from bioplast.backends import get_backend
from bioplast.ensembles import member_protocols
from bioplast.training import Trainer

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "papers_loops.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("papers_loops", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("papers_loops", module)
    spec.loader.exec_module(module)
    return module


loops = _load_script()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ---------------------------------------------------------------------- the script
def test_quick_run_prints_every_row_with_finite_numbers(tmp_path):
    """``papers_loops.py --quick`` runs in under 60 s and reports every configuration the
    script declares (reference: `CONFIG_KEYS` and the sizes of `Sizes.quick`), with finite
    positive times, ratios and FLOP/s fractions, in the Markdown table and the JSON."""
    out = tmp_path / "rows.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < 60, f"--quick took {elapsed:.1f} s"
    rows = json.loads(out.read_text())["rows"]
    quick = loops.Sizes.quick()
    expected = {"cue", "cue_epoch", "cue_ensemble", "cue_ensemble_paper",
                *(f"parity_{n}" for n in quick.parity_levels),
                *(f"parity_ensemble_{n}" for n in quick.parity_ensemble_levels),
                *(f"parity_ensemble_paper_{n}" for n in quick.parity_ensemble_levels)}
    assert {row["key"] for row in rows} == expected
    for row in rows:
        for name in ("reference_s_per_update", "bioplast_s_per_update", "ratio",
                     "flop_per_update", "reference_mm_fraction", "bioplast_mm_fraction"):
            assert math.isfinite(row[name]) and row[name] > 0, (row["key"], name, row[name])
        assert "NOT matched" not in row["note"], row
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| configuration | reference |")
    assert len(table) == 1 + len(expected)  # header + one line per row
    for line in table[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(loops.COLUMNS)
        assert "nan" not in cells, line
        float(cells[5].rstrip("x"))  # the ratio is a number


# ---------------------------------------------------------------------- delayed cue
def _phases_protocol(n_units: int, copies: int, **settings):
    """The shipped phases protocol, small, float64, noise off."""
    return bioplast.load_protocol(REPO / "protocols" / "papers" / "phases.yaml", {
        "model.n_units": n_units, "task.delay": "40 ms", "training.batch_size": 2 * copies,
        "backend.dtype": "float64", "training.noise": False, "record.trials": 0,
        "training.steps_per_epoch": 1, "training.alignment_every": None, **settings})


def test_delayed_cue_replica_gradient_equals_bioplast_bptt():
    """The replica's loss and gradient (bioplast's readout timing, noise off) equal
    bioplast's for the same weights, batch and random initial state, float64, to 1e-10.
    Reference: bioplast's task loss (`Task.loss_value`) of the outputs of the torch backend
    (autograd through bioplast's own step, as its BPTT rule computes it)."""
    protocol = _phases_protocol(12, 3)
    model, task = protocol.model, protocol.task
    params = model.init_params(seed=4)
    params["W_rec"] = params["W_rec"] * 3.0  # far from linear: tanh saturates somewhat
    batch = task.sample(6, np.random.default_rng(0))
    initial = model.initial_state(6, seed=5)
    leaves = {name: torch.tensor(value, dtype=torch.float64,
                                 requires_grad=model.params[name].trainable)
              for name, value in params.items()}
    backend = get_backend("torch", dtype="float64")
    trajectory = backend.simulate(model, leaves, batch.inputs, initial, [], noise=False)
    loss = task.loss_value(trajectory.outputs[0], torch.as_tensor(batch.targets),
                           torch.as_tensor(batch.mask))
    trained = [name for name in params if model.params[name].trainable]
    expected = dict(zip(trained, torch.autograd.grad(loss, [leaves[n] for n in trained])))

    replica = loops.PhasesRNN(n_units=12, noise_sigma=0.0,
                              readout_before_step=False).double()
    replica.load_bioplast(params)
    outputs, _ = replica(torch.as_tensor(batch.inputs),
                         torch.as_tensor(initial["r"], dtype=torch.float64))
    steps = task.periods()
    mine = loops.phases_loss(outputs, torch.as_tensor(batch.targets),
                             steps["response"] + steps["post"])
    mine.backward()
    assert abs(mine.item() - loss.item()) <= 1e-10 * abs(loss.item())
    assert _relative(replica.W_rec.weight.grad, expected["W_rec"]) <= 1e-10
    assert _relative(replica.W_in.weight.grad, expected["W_in"]) <= 1e-10
    assert _relative(replica.W_in.bias.grad, expected["b_in"]) <= 1e-10
    assert _relative(replica.W_rec.bias.grad, expected["b_rec"]) <= 1e-10
    assert _relative(replica.W_out.weight.grad, expected["W_out"]) <= 1e-10
    assert _relative(replica.W_out.bias.grad, expected["b_out"]) <= 1e-10


def test_delayed_cue_replica_update_equals_bioplast_trainer_update():
    """One update of the replica's training loop (`PhasesLoop.update`: DataLoader batch,
    weighted MSE, torch.optim.SGD) and one ``Trainer.train_epoch`` of bioplast on the
    shipped phases protocol, same weights, same batch, constant initial state, float64,
    noise off: the same loss and the same gradient (read from the SGD step with lr 1, no
    momentum) to 1e-10, W_rec's diagonal included (``phases_rnn`` zeroes it at
    initialisation only and trains it, as the paper's code). Reference: bioplast's
    trainer."""
    n_units, copies = 10, 3
    protocol = _phases_protocol(n_units, copies, **{
        "model.initial.r": 0.05,
        "rule.optimizer": {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0}})
    trainer = Trainer(member_protocols(protocol))
    before = {name: value[0].clone() for name, value in trainer.params.items()}
    rows = trainer.train_epoch()
    after = {name: value[0].clone() for name, value in trainer.params.items()}
    bioplast_loss = rows[0][0]
    steps = protocol.task.periods()

    paper = loops.PhasesLoop(n_units, copies, steps["cue"], steps["delay"],
                             steps["response"], lr=1.0, dtype=torch.float64, noise_sigma=0.0,
                             readout_before_step=False, initial_rate=0.05, momentum=0.0,
                             weight_decay=0.0)
    paper.model.load_bioplast({name: value.numpy() for name, value in before.items()})
    start = {name: value.detach().clone() for name, value in paper.model.named_parameters()}
    paper_loss = paper.update()
    assert abs(paper_loss - bioplast_loss) <= 1e-10 * abs(bioplast_loss)
    grads = {name: start[name] - value.detach()
             for name, value in paper.model.named_parameters()}  # lr = 1
    assert _relative(grads["W_rec.weight"], before["W_rec"] - after["W_rec"]) <= 1e-10
    assert grads["W_rec.weight"].diagonal().abs().max() > 0  # autapses trained, as the paper
    assert _relative(grads["W_in.weight"], before["W_in"] - after["W_in"]) <= 1e-10
    assert _relative(grads["W_in.bias"], before["b_in"] - after["b_in"]) <= 1e-10
    assert _relative(grads["W_rec.bias"], before["b_rec"] - after["b_rec"]) <= 1e-10
    assert _relative(grads["W_out.weight"], before["W_out"] - after["W_out"]) <= 1e-10
    assert _relative(grads["W_out.bias"], before["b_out"] - after["b_out"]) <= 1e-10


def test_delayed_cue_paper_readout_gradient_matches_finite_differences():
    """The replica as timed (readout of the state at the start of each step, the paper's
    code) has the gradient of its own loss: autograd equals central finite differences of
    the loss in float64 (relative 1e-6) for every parameter entry. Reference: finite
    differences (bioplast reads outputs at the end of a step, so it is no reference here)."""
    torch.manual_seed(0)
    replica = loops.PhasesRNN(n_units=5, noise_sigma=0.0).double()
    inputs, targets = loops.delayed_cue_data(2, 2, 3, 2, torch.float64)
    initial = torch.tanh(0.1 * torch.randn(4, 5, dtype=torch.float64))

    def loss():
        outputs, _ = replica(inputs, initial)
        return loops.phases_loss(outputs, targets, 2)
    replica.zero_grad()
    loss().backward()
    step = 1e-6
    for name, parameter in replica.named_parameters():
        numeric = torch.zeros_like(parameter)
        with torch.no_grad():
            for index in np.ndindex(*parameter.shape):
                saved = parameter[index].item()
                parameter[index] = saved + step
                up = loss().item()
                parameter[index] = saved - step
                down = loss().item()
                parameter[index] = saved
                numeric[index] = (up - down) / (2 * step)
        assert _relative(parameter.grad, numeric) <= 1e-6, name


# ---------------------------------------------------------------------- N-parity
def test_parity_replica_gradient_equals_bioplast_bptt():
    """The N-parity replica (`TimescaleRNN`, `parity_loss`: LeakyReLU inside the leak,
    clamped per-unit tau, heads read at the last step, summed cross-entropies of the active
    heads) has bioplast's loss and gradient for the same ``leaky_tau`` network, batch and
    initial state at level N = 4 (heads N = 2, 3, 4 of 5), float64, to 1e-10. Reference:
    bioplast's task loss of the torch backend's outputs, by autograd."""
    protocol = bioplast.load_protocol(REPO / "protocols" / "nparity_multi_head.yaml", {
        "model.n_units": 16, "task.max_n": 6, "backend.dtype": "float64"})
    model, task = protocol.model, protocol.task
    level = task.level_at(4)
    params = model.init_params(seed=2)
    batch = task.sample(8, np.random.default_rng(3), level)
    initial = model.initial_state(8, seed=6)
    leaves = {name: torch.tensor(value, dtype=torch.float64,
                                 requires_grad=model.params[name].trainable)
              for name, value in params.items()}
    trajectory = get_backend("torch", dtype="float64").simulate(
        model, leaves, batch.inputs, initial, [], noise=False)
    loss = task.loss_value(trajectory.outputs[0], torch.as_tensor(batch.targets),
                           torch.as_tensor(batch.mask), level)
    trained = [name for name in params if model.params[name].trainable]
    expected = dict(zip(trained, torch.autograd.grad(loss, [leaves[n] for n in trained])))

    replica = loops.TimescaleRNN(n_units=16, n_heads=task.n_heads).double()
    replica.load_bioplast(params)
    sequences = torch.as_tensor(batch.inputs).transpose(0, 1)  # (time, batch, 1)
    labels = [torch.as_tensor(batch.conditions[f"label_head{head}"]) for head, _ in
              level.heads]
    _, logits = replica(sequences, torch.as_tensor(initial["r"]))
    mine = loops.parity_loss(logits, labels)
    mine.backward()
    assert abs(mine.item() - loss.item()) <= 1e-10 * abs(loss.item())
    assert _relative(replica.w_hh.weight.grad, expected["W_rec"]) <= 1e-10
    assert _relative(replica.w_hh.bias.grad, expected["b"]) <= 1e-10
    assert _relative(replica.input_layers[0].weight.grad, expected["W_in"]) <= 1e-10
    assert _relative(replica.taus.grad, expected["tau"]) <= 1e-10
    weight = torch.cat([head.weight.grad if head.weight.grad is not None else
                        torch.zeros_like(head.weight) for head in replica.heads])
    bias = torch.cat([head.bias.grad if head.bias.grad is not None else
                      torch.zeros_like(head.bias) for head in replica.heads])
    assert _relative(weight, expected["W_out"]) <= 1e-10
    assert _relative(bias, expected["b_out"]) <= 1e-10


def test_parity_batch_follows_the_paper_task():
    """`parity_batch` draws what the paper's ``make_batch_Nbit_pair_parity`` draws: one
    length in [N_max + 2, 4 N_max + 2), binary inputs ``(time, batch, 1)``, and for each N
    the parity of the last N bits. Reference: the labels recomputed from the bits."""
    torch.manual_seed(0)
    np.random.seed(0)
    lengths = set()
    for _ in range(50):
        sequences, labels = loops.parity_batch([2, 3, 4, 5], 16)
        length = sequences.shape[0]
        lengths.add(length)
        assert 7 <= length < 22 and sequences.shape[1:] == (16, 1)
        bits = sequences[..., 0].T.numpy()
        assert set(np.unique(bits)) <= {0.0, 1.0}
        for n, label in zip([2, 3, 4, 5], labels):
            np.testing.assert_array_equal(label.numpy(), bits[:, -n:].sum(axis=1) % 2)
    assert len(lengths) > 5
