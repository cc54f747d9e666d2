"""bioplast's training updates against hand-written replicas of the source papers' loops.

Issue 15 asks bioplast to train faster than the papers' own one-off scripts. The papers'
code is not a dependency, so this file holds REFERENCE replicas written for this benchmark
after reading the authors' code (same structure, same arithmetic, not their text):

- `PhasesRNN` / `PhasesLoop`: the delayed-cue loop of Kurtkaya, Dinc et al. 2025
  (fatihdinc/dynamical-phases-stm, ``Experiments/rnn-large-nopost/*/train_parallel.py`` and
  ``src/rnn.py``): N = 100 leaky rate units ``r <- (1 - a) r + a tanh(W_in u + W_rec r +
  eps)`` with ``nn.Linear`` layers (each with its own bias), a = 0.5, eps ~ N(0, 0.001^2)
  drawn every step, r_0 = tanh(0.1 N(0, 1)) drawn every forward, sigmoid readout of the
  state at the START of each step, a Python loop over the 56 steps (30 ms cue + 200 ms
  delay + 50 ms response at dt = 5 ms), the fixed full batch of 64 copies per cue served
  by a ``DataLoader``, weighted MSE (last 10 steps weighted 1 - 10/T, the others 10/T),
  ``torch.optim.SGD`` (momentum 0.9, weight decay 1e-7), full BPTT, one update per epoch,
  and per update the paper's bookkeeping (``loss.item()``, reaction accuracy and
  reliability, the norm of W_rec's gradient).
- `TimescaleRNN` / `ParityLoop`: the multi-head N-parity loop of Khajehabdollahi, Zeraati et
  al. 2024 (LevinaLab/rnn_timescale_public, ``training/train.py`` and
  ``src/models/RNN_modified.py``, the ``RNN_Mod`` structure bioplast's ``leaky_tau`` follows):
  500 units, ``nn.Linear`` input, recurrent and 100 readout heads (2 classes each), per-unit
  trainable tau (init 1 + U(0, 1), clamped >= 1 in the forward), LeakyReLU inside the leak,
  autapses zeroed at every forward, the input layer applied to the whole sequence and
  indexed per step (``x[t]``: its backward is quadratic in the trial length, as in the
  paper), a Python loop over steps, all 100 heads evaluated at the last step, the loss the
  sum of the cross-entropies of the active heads (N = 2 .. N_max), gradient-norm clip 2.0,
  SGD lr 0.05 momentum 0.1 Nesterov. Batches (256 sequences of length M ~ randint(N + 2,
  4 N + 2)) are drawn with whole-batch torch operations; the paper's code draws them
  sequence by sequence in Python, which costs more, so this reference is if anything faster
  than the paper's own code.

Each configuration is measured in this process, in interleaved rounds (reference, then
bioplast, alternating which goes first), one torch thread (``torch.set_num_threads(1)``),
float32 as the papers; the time per update is the median over rounds. bioplast is measured
only through its public API (`bioplast.load_protocol` with ``--set``-style dict edits of the
shipped protocols, `bioplast.training.Trainer` and its ``train_epoch``, `bioplast.train`),
so the numbers describe whatever engine bioplast has when the script runs. The N-parity
curriculum level (heads for N = 2 .. N_max) is set through the trainer's curriculum
(``member.curriculum.load_state_dict({"n": N_max})``); no protocol key sets the current
level of a multi-head curriculum. N-parity trials have a random length; each round gives the
replica the length bioplast draws in that update (read beforehand from a copy of the
member's generator with the task's own ``sample``, and checked afterwards), so both sides do
the same work.

Columns of the table:

- ``reference s/update`` and ``bioplast s/update``: seconds per update (of all the networks
  the side trains at once: E for an ensemble, 4 for "4 in a row").
- ``nets``: networks per update (reference / bioplast).
- ``ratio``: network-epochs per core-second of bioplast over the reference's (one thread on
  both sides, so ``(nets_b / t_b) / (nets_r / t_r)``); > 1: bioplast is faster. The goal
  column repeats the issue's goal for that row.
- ``FLOP/update`` and the two ``mm fraction`` columns: forward + backward counted as 3x the
  forward matrix products (recurrent + input + readout; N-parity: readout of all 100 heads
  at the last step only, as the task needs), divided by the time per update, as a fraction
  of the FLOP/s ``torch.mm`` reaches on the same shapes (``torch.bmm`` over members for the
  batched ensemble; best of several timings) on this machine, this thread count. A
  backward pass can be cheaper than two forward products (the paper's N-parity input layer
  is one product over all steps; weight gradients are large products), so a fraction can
  come out near or above 1 for short trials.

    python benchmarks/papers_loops.py [--quick] [--device cpu|cuda] [--json PATH]
        [--only cue,cue_epoch,cue_ensemble,parity,parity_ensemble] [--rounds R]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
PHASES_PROTOCOL = REPO / "protocols" / "papers" / "phases.yaml"
PARITY_PROTOCOL = REPO / "protocols" / "nparity_multi_head.yaml"
CONFIG_KEYS = ("cue", "cue_epoch", "cue_ensemble", "parity", "parity_ensemble")


# ====================================================================== delayed cue replica
class PhasesRNN(nn.Module):
    """The delayed-cue network of Kurtkaya, Dinc et al. 2025, written as their ``RNN``.

    ``r(t + dt) = (1 - alpha) r(t) + alpha tanh(W_in u(t) + W_rec r(t) + eps(t))`` with
    ``nn.Linear`` layers (both with a bias), ``eps ~ N(0, noise_sigma^2)`` drawn at every
    step, output ``sigmoid(W_out r + b_out)``. ``readout_before_step=True`` (the paper's
    code) reads the output from the state at the start of each step (outputs r_0 ..
    r_{T-1}); ``False`` reads it from the state at the end of each step (r_1 .. r_T), as
    bioplast records it (used to compare gradients with bioplast's).
    """

    def __init__(self, n_inputs: int = 2, n_units: int = 100, n_outputs: int = 2,
                 alpha: float = 0.5, noise_sigma: float = 0.001, rate_sigma: float = 0.1,
                 readout_before_step: bool = True):
        super().__init__()
        self.n_units = n_units
        self.alpha = alpha
        self.noise_sigma = noise_sigma
        self.rate_sigma = rate_sigma
        self.readout_before_step = readout_before_step
        self.W_in = nn.Linear(n_inputs, n_units, bias=True)
        self.W_rec = nn.Linear(n_units, n_units, bias=True)
        self.W_out = nn.Linear(n_units, n_outputs, bias=True)
        for layer in (self.W_in, self.W_rec, self.W_out):
            nn.init.xavier_uniform_(layer.weight)
        with torch.no_grad():
            self.W_rec.weight.fill_diagonal_(0)  # at initialization only, as the paper

    def forward(self, inputs: torch.Tensor, initial: torch.Tensor | None = None):
        """``inputs (batch, time, input)`` -> ``(outputs (batch, time, output), rates
        (batch, time, unit))``; ``initial (batch, unit)`` replaces the random r_0."""
        if initial is None:  # the paper: a fresh leaf that requires grad, every forward
            draw = torch.randn(inputs.shape[0], self.n_units, dtype=inputs.dtype,
                               device=inputs.device, requires_grad=True)
            rates = torch.tanh(draw * self.rate_sigma)
        else:
            rates = initial
        outputs, states = [], []
        for t in range(inputs.shape[1]):
            if self.readout_before_step:
                outputs.append(torch.sigmoid(self.W_out(rates)))
            drive = self.W_in(inputs[:, t])
            recurrent = self.W_rec(rates)
            if self.noise_sigma:
                noise = torch.randn(recurrent.shape, dtype=recurrent.dtype,
                                    device=recurrent.device) * self.noise_sigma
                rates = (1 - self.alpha) * rates + self.alpha * torch.tanh(
                    drive + recurrent + noise)
            else:
                rates = (1 - self.alpha) * rates + self.alpha * torch.tanh(drive + recurrent)
            if not self.readout_before_step:
                outputs.append(torch.sigmoid(self.W_out(rates)))
            states.append(rates)
        return torch.stack(outputs, dim=1), torch.stack(states, dim=1)

    @torch.no_grad()
    def load_bioplast(self, params: dict) -> None:
        """Copy one bioplast network's parameters (arrays without a member axis) into this
        module: ``phases_rnn`` (the authors' network: ``b_in``, ``b_rec``) or ``leaky_rate``
        (one bias ``b``, which goes to ``W_in.bias``; ``W_rec.bias`` is then zero: their
        gradients are equal, both enter only through the sum), with ``W_rec``, ``W_in``,
        ``W_out``, ``b_out``."""
        def tensor(name):
            return torch.as_tensor(np.asarray(params[name]), dtype=self.W_rec.weight.dtype,
                                   device=self.W_rec.weight.device)
        self.W_rec.weight.copy_(tensor("W_rec"))
        self.W_in.weight.copy_(tensor("W_in"))
        if "b_in" in params:
            self.W_in.bias.copy_(tensor("b_in"))
            self.W_rec.bias.copy_(tensor("b_rec"))
        else:
            self.W_in.bias.copy_(tensor("b"))
            self.W_rec.bias.zero_()
        self.W_out.weight.copy_(tensor("W_out"))
        self.W_out.bias.copy_(tensor("b_out"))


def delayed_cue_data(copies_per_cue: int, cue_steps: int, delay_steps: int,
                     response_steps: int, dtype=torch.float32):
    """The paper's fixed full batch: ``copies_per_cue`` copies of each of the two one-hot
    cues; inputs and targets ``(2 * copies, time, 2)`` (cue, delay, response window)."""
    total = cue_steps + delay_steps + response_steps
    inputs = torch.zeros(2, total, 2, dtype=dtype)
    targets = torch.zeros(2, total, 2, dtype=dtype)
    for trial, channel in ((0, 1), (1, 0)):  # the paper's label rows [[0, 1], [1, 0]]
        inputs[trial, :cue_steps, channel] = 1.0
        targets[trial, cue_steps + delay_steps:, channel] = 1.0
    return inputs.repeat(copies_per_cue, 1, 1), targets.repeat(copies_per_cue, 1, 1)


def phases_weights(targets: torch.Tensor, weighted_steps: int) -> torch.Tensor:
    """The paper's loss weights: the last ``weighted_steps`` steps 1 - w, the others w,
    with w = weighted_steps / T."""
    w = weighted_steps / targets.shape[1]
    weights = torch.zeros_like(targets)
    weights[:, -weighted_steps:, :] = 1 - w
    weights[:, :-weighted_steps, :] = w
    return weights


def phases_loss(outputs: torch.Tensor, targets: torch.Tensor, weighted_steps: int):
    """Weighted MSE averaged over all elements (the paper's ``WeightedMSELoss``)."""
    return ((outputs - targets) ** 2 * phases_weights(targets, weighted_steps)).mean()


def reaction_scores(outputs: torch.Tensor, targets: torch.Tensor, start: int, end: int):
    """The paper's per-update bookkeeping: reaction accuracy (the normalized output's
    argmax matches the target's) and reliability (normalized output of the target channel)
    over steps ``start:end``, as Python floats."""
    probability = torch.nan_to_num(outputs / outputs.sum(dim=-1, keepdim=True))
    window, truth = probability[:, start:end], targets[:, start:end].argmax(dim=-1)
    accuracy = 1 - F.l1_loss(window.argmax(dim=-1).float(), truth.float())
    reliability = window.gather(-1, truth[..., None]).mean()
    return round(accuracy.item(), 4), round(reliability.item(), 4)


class PhasesLoop:
    """The paper's training loop: one full-batch update per epoch (`update`)."""

    def __init__(self, n_units: int = 100, copies_per_cue: int = 64, cue_steps: int = 6,
                 delay_steps: int = 40, response_steps: int = 10, lr: float = 0.0373,
                 seed: int = 0, device="cpu", dtype=torch.float32, noise_sigma: float = 0.001,
                 readout_before_step: bool = True, initial_rate: float | None = None,
                 zero_autapses: bool = False, momentum: float = 0.9,
                 weight_decay: float = 1e-7):
        """The paper's settings by default. For comparisons with bioplast:
        ``readout_before_step=False`` (bioplast reads the state at the end of a step),
        ``initial_rate`` (a constant r_0 instead of a random one), ``zero_autapses``
        (W_rec's diagonal set to zero after every step, as bioplast's ``autapses: false``;
        the paper zeroes it at initialization only)."""
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.cue_steps, self.delay_steps = cue_steps, delay_steps
        self.response_steps = response_steps
        self.initial_rate = initial_rate
        self.zero_autapses = zero_autapses
        self.model = PhasesRNN(n_units=n_units, noise_sigma=noise_sigma,
                               readout_before_step=readout_before_step).to(self.device, dtype)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum,
                                         weight_decay=weight_decay)
        inputs, targets = delayed_cue_data(copies_per_cue, cue_steps, delay_steps,
                                           response_steps, dtype)
        dataset = torch.utils.data.TensorDataset(inputs, targets)
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset),
                                                  shuffle=False)
        self.record = {"loss": [], "accuracy": [], "reliability": [], "grad_norm": []}

    @property
    def n_steps(self) -> int:
        return self.cue_steps + self.delay_steps + self.response_steps

    def update(self) -> float:
        """One epoch: one SGD step on the full batch; returns the loss."""
        for inputs, targets in self.loader:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            self.optimizer.zero_grad()
            initial = None if self.initial_rate is None else torch.full(
                (inputs.shape[0], self.model.n_units), self.initial_rate,
                dtype=inputs.dtype, device=self.device)
            outputs, _ = self.model(inputs, initial)
            loss = phases_loss(outputs, targets, self.response_steps)
            start = self.cue_steps + self.delay_steps - 1  # the paper's window
            accuracy, reliability = reaction_scores(outputs, targets, start,
                                                    start + self.response_steps)
            loss.backward()
            self.optimizer.step()
            if self.zero_autapses:
                with torch.no_grad():
                    self.model.W_rec.weight.fill_diagonal_(0)
            self.record["loss"].append(loss.item())
            self.record["accuracy"].append(accuracy)
            self.record["reliability"].append(reliability)
            self.record["grad_norm"].append(torch.norm(self.model.W_rec.weight.grad).item())
        return self.record["loss"][-1]


# ====================================================================== N-parity replica
class TimescaleRNN(nn.Module):
    """The multi-head network of Khajehabdollahi, Zeraati et al. 2024 (``RNN_Mod``, one
    layer): ``h <- (1 - 1/tau) h + LeakyReLU(W_hh h + b_hh + W_in x_t + b_in) / tau`` with
    ``tau = clamp(taus, min=1)`` per unit, and ``n_heads`` 2-class readouts of the last
    state. Inputs are ``(time, batch, 1)`` as in the paper."""

    def __init__(self, n_units: int = 500, n_heads: int = 100, n_classes: int = 2):
        super().__init__()
        self.n_units = n_units
        self.input_layers = nn.ModuleList([nn.Linear(1, n_units, bias=True)])
        self.w_hh = nn.Linear(n_units, n_units, bias=True)
        self.taus = nn.Parameter(1.0 + torch.rand(n_units))
        self.heads = nn.ModuleList([nn.Linear(n_units, n_classes, bias=True)
                                    for _ in range(n_heads)])
        self.afunc = nn.LeakyReLU()

    def forward(self, data: torch.Tensor, hs: torch.Tensor | None = None):
        """``data (time, batch, 1)`` -> ``(last state (batch, unit), [logits (batch, 2)
        of every head])``; ``hs`` replaces the random initial state 0.1 U(0, 1)."""
        if hs is None:
            hs = 0.1 * torch.rand(data.shape[1], self.n_units, dtype=data.dtype,
                                  device=data.device)
        x = torch.stack([layer(data) for layer in self.input_layers]).mean(dim=0)
        self.w_hh.weight.data.fill_diagonal_(0.0)  # no autapses, at every forward
        for t in range(data.shape[0]):
            inp = x[t, ...]  # indexing per step, as the paper (quadratic backward)
            hs = (1 - 1 / torch.clamp(self.taus, min=1.0)) * hs + \
                self.afunc(self.w_hh(hs) + inp) / torch.clamp(self.taus, min=1.0)
        return hs, [head(hs) for head in self.heads]

    @torch.no_grad()
    def load_bioplast(self, params: dict) -> None:
        """Copy one bioplast ``leaky_tau`` network (``W_rec``, ``W_in``, ``b``, ``tau``,
        ``W_out (2 heads, unit)``, ``b_out``; no member axis) into this module: ``b`` goes
        to ``w_hh.bias``, the input layer's bias is zero, head k reads output channels
        2k, 2k + 1."""
        def tensor(name):
            return torch.as_tensor(np.asarray(params[name]), dtype=self.taus.dtype,
                                   device=self.taus.device)
        self.w_hh.weight.copy_(tensor("W_rec"))
        self.w_hh.bias.copy_(tensor("b"))
        self.input_layers[0].weight.copy_(tensor("W_in"))
        self.input_layers[0].bias.zero_()
        self.taus.copy_(tensor("tau"))
        weight, bias = tensor("W_out"), tensor("b_out")
        for k, head in enumerate(self.heads):
            head.weight.copy_(weight[2 * k:2 * k + 2])
            head.bias.copy_(bias[2 * k:2 * k + 2])


def parity_batch(ns: list[int], batch_size: int, length: int | None = None,
                 device="cpu", dtype=torch.float32):
    """A multi-head N-parity batch as the paper's ``make_batch_Nbit_pair_parity``: one
    length M ~ randint(N_max + 2, 4 N_max + 2) (or ``length``), bits ~ Bernoulli(p) with
    p ~ U(0, 1) per sequence, label of head N = parity of the last N bits. Returns
    ``(sequences (M, batch, 1), [labels (batch,) per N])``, drawn with torch's global
    generator on ``device``."""
    n_max = ns[-1]
    if length is None:
        length = int(np.random.randint(n_max + 2, 4 * n_max + 2))
    p = torch.rand(batch_size, 1, device=device)
    bits = (torch.rand(batch_size, length, device=device) < p).to(dtype)
    labels = [bits[:, -n:].sum(dim=1).remainder(2).long() for n in ns]
    return bits.T.unsqueeze(-1).contiguous(), labels


def parity_loss(logits: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the active heads of the batch-mean cross-entropy (the paper's loss)."""
    loss = 0.0
    for head, label in enumerate(labels):
        loss = loss + F.cross_entropy(logits[head], label)
    return loss


class ParityLoop:
    """The paper's training step at curriculum level N_max (heads N = 2 .. N_max)."""

    def __init__(self, n_max: int, n_units: int = 500, batch_size: int = 256,
                 n_heads: int = 100, seed: int = 0, device="cpu", dtype=torch.float32):
        torch.manual_seed(seed)
        np.random.seed(seed)
        self.device = torch.device(device)
        self.dtype = dtype
        self.ns = list(range(2, n_max + 1))
        self.batch_size = batch_size
        self.model = TimescaleRNN(n_units, n_heads).to(self.device, dtype)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.1,
                                         nesterov=True)
        self.losses: list[float] = []

    def update(self, length: int | None = None) -> float:
        """One step on a fresh batch (of ``length`` steps if given); returns the loss."""
        self.optimizer.zero_grad()
        sequences, labels = parity_batch(self.ns, self.batch_size, length, self.device,
                                         self.dtype)
        _, logits = self.model(sequences)
        loss = parity_loss(logits, labels)
        loss.backward()
        self.losses.append(loss.item())
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=2.0, norm_type=2)
        self.optimizer.step()
        return self.losses[-1]


# ====================================================================== bioplast side
def bioplast_trainer(path: Path, settings: dict, level: int | None = None):
    """A `bioplast.training.Trainer` for the protocol at ``path`` edited by ``settings``
    (``--set``-style keys), one update per ``train_epoch``; ``level`` sets the curriculum's
    current N (multi-head: heads for N = n .. level)."""
    import bioplast
    from bioplast.ensembles import member_protocols
    from bioplast.training import Trainer
    protocol = bioplast.load_protocol(path, {"training.steps_per_epoch": 1,
                                             "record.trials": 0, **settings})
    trainer = Trainer(member_protocols(protocol))
    if level is not None:
        for member in trainer.members:
            member.curriculum.load_state_dict({"n": level})
    return trainer


class LengthProbe:
    """The trial length each member of an N-parity trainer will draw in its next update,
    read from a copy of the member's generator with the task's own ``sample``; `matched`
    checks afterwards that the member's generator moved exactly as predicted (the batch
    draw plus its initial-state seed), i.e. that the predicted lengths were used."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.all_matched = True
        self._after: list = []

    def lengths(self) -> list[int]:
        trainer, found = self.trainer, []
        self._after = []
        batch_size = trainer.protocols[0].training.batch_size
        for member in trainer.members:
            rng = copy.deepcopy(member.rng)
            level = member.curriculum.level()
            found.append(member.protocol.task.sample(batch_size, rng, level).n_steps)
            rng.integers(2**62)  # the initial state's seed
            self._after.append(rng.bit_generator.state)
        return found

    def check(self) -> bool:
        ok = all(member.rng.bit_generator.state == state
                 for member, state in zip(self.trainer.members, self._after))
        self.all_matched &= ok
        return ok


# ====================================================================== timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(function: Callable, device: torch.device, repeats: int = 1) -> float:
    """Mean wall time of ``repeats`` calls of ``function`` (device synchronized)."""
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - started) / repeats


def mm_rate(shapes: list[tuple], device, dtype=torch.float32, repeats: int = 5,
            members: int = 0) -> float:
    """FLOP/s of ``torch.mm`` (``torch.bmm`` over ``members`` if > 0) doing the matrix
    products ``shapes`` = [(m, k, n, count), ...] once each in order: the best of
    ``repeats`` timings of at least 50 ms each (what the machine can do with these shapes,
    as little disturbed as possible by other work on it)."""
    operands = []
    for m, k, n, count in shapes:
        lead = (members,) if members else ()
        a = torch.randn(*lead, m, k, device=device, dtype=dtype)
        b = torch.randn(*lead, k, n, device=device, dtype=dtype)
        operands.append((a, b, count))
    product = torch.bmm if members else torch.mm
    flops = sum(2 * m * k * n * count for m, k, n, count in shapes) * max(members, 1)

    def run():
        for a, b, count in operands:
            for _ in range(count):
                product(a, b)
    device = torch.device(device)
    run()
    calls = max(1, math.ceil(0.05 / max(seconds(run, device), 1e-9)))
    times = [seconds(run, device, calls) for _ in range(repeats)]
    return flops / min(times)


@dataclass
class Row:
    """One line of the table: a configuration measured against a reference."""

    key: str
    configuration: str
    reference: str
    goal: str = ""
    reference_networks: int = 1
    bioplast_networks: int = 1
    reference_times: list = field(default_factory=list)
    bioplast_times: list = field(default_factory=list)
    reference_flops: list = field(default_factory=list)  # per round: FLOPs of the work
    bioplast_flops: list = field(default_factory=list)
    reference_mm: float = math.nan  # FLOP/s of torch.mm on the reference's shapes
    bioplast_mm: float = math.nan
    note: str = ""

    def summary(self) -> dict:
        """Medians over rounds; the ratio is the median of the rounds' ratios (each round
        measured both sides on the same work)."""
        t_r = statistics.median(self.reference_times)
        t_b = statistics.median(self.bioplast_times)
        ratio = statistics.median(
            (self.bioplast_networks / b) / (self.reference_networks / r)
            for r, b in zip(self.reference_times, self.bioplast_times))

        def fraction(flops, times, mm):
            if not flops or not math.isfinite(mm):
                return math.nan
            return statistics.median(f / t for f, t in zip(flops, times)) / mm
        return {"key": self.key, "configuration": self.configuration,
                "reference": self.reference, "reference_s_per_update": t_r,
                "bioplast_s_per_update": t_b, "reference_networks": self.reference_networks,
                "bioplast_networks": self.bioplast_networks, "ratio": ratio,
                "goal": self.goal,
                "flop_per_update": statistics.median(self.bioplast_flops)
                if self.bioplast_flops else math.nan,
                "reference_mm_fraction": fraction(self.reference_flops,
                                                  self.reference_times, self.reference_mm),
                "bioplast_mm_fraction": fraction(self.bioplast_flops, self.bioplast_times,
                                                 self.bioplast_mm),
                "rounds": len(self.bioplast_times), "note": self.note}


def interleave(row: Row, reference: Callable, candidate: Callable, rounds: int,
               device: torch.device, repeats: int = 1) -> None:
    """Warm both up, then ``rounds`` rounds of ``repeats`` calls each, alternating which
    side goes first; appends the mean time per call of each round to ``row``."""
    reference()
    candidate()
    for index in range(rounds):
        pair = [(reference, row.reference_times), (candidate, row.bioplast_times)]
        for function, times in (pair if index % 2 == 0 else pair[::-1]):
            times.append(seconds(function, device, repeats))


def cue_flops(n_units: int, batch: int, steps: int, n_in: int = 2, n_out: int = 2) -> int:
    """Forward + backward (3x) FLOPs of the matrix products of one delayed-cue update."""
    return 3 * steps * 2 * batch * n_units * (n_units + n_in + n_out)


def cue_shapes(n_units: int, batch: int, steps: int, n_in: int = 2, n_out: int = 2):
    return [(batch, n_units, n_units, steps), (batch, n_in, n_units, steps),
            (batch, n_units, n_out, steps)]


def parity_flops(n_units: int, batch: int, length: int, n_heads: int = 100) -> int:
    """Forward + backward (3x) FLOPs of one N-parity update of ``length`` steps: recurrent
    and input products at every step, the readout of all heads at the last step."""
    return 3 * 2 * batch * n_units * (length * (n_units + 1) + 2 * n_heads)


def parity_shapes(n_units: int, batch: int, length: int, n_heads: int = 100):
    return [(batch, n_units, n_units, length), (batch, 1, n_units, length),
            (batch, n_units, 2 * n_heads, 1)]


# ====================================================================== configurations
@dataclass
class Sizes:
    """The sizes of a run: the papers' (default) or a smoke run's (``--quick``)."""

    cue_units: int = 100
    cue_copies: int = 64          # per cue: batch 128
    cue_members: int = 100
    parity_units: int = 500
    parity_batch: int = 256
    parity_levels: tuple = (2, 10, 30)
    parity_ensemble_levels: tuple = (2, 10)
    parity_members: int = 4
    rounds: int = 5
    slow_rounds: int = 3
    repeats: int = 3              # calls per round of the fast configurations
    epoch_epochs: int = 6

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(cue_units=32, cue_copies=8, cue_members=8, parity_units=48,
                   parity_batch=32, parity_levels=(2, 3, 4), parity_ensemble_levels=(2, 3),
                   parity_members=4, rounds=2, slow_rounds=1, repeats=1, epoch_epochs=3)


CUE_STEPS, DELAY_STEPS, RESPONSE_STEPS = 6, 40, 10  # 30 ms + 200 ms + 50 ms at dt 5 ms


def cue_settings(sizes: Sizes, device: str) -> dict:
    return {"task.delay": "200 ms", "model.n_units": sizes.cue_units,
            "training.batch_size": 2 * sizes.cue_copies, "backend.device": device}


def measure_cue(sizes: Sizes, device: torch.device) -> Row:
    """Delayed cue, one network: the paper's update vs bioplast's ``train_epoch``."""
    n, batch = sizes.cue_units, 2 * sizes.cue_copies
    steps = CUE_STEPS + DELAY_STEPS + RESPONSE_STEPS
    row = Row("cue", f"delayed cue, N={n}, batch {batch}, {steps} steps: one update",
              "paper replica", goal=">= 5x")
    paper = PhasesLoop(n, sizes.cue_copies, device=device)
    trainer = bioplast_trainer(PHASES_PROTOCOL, cue_settings(sizes, str(device)))
    interleave(row, paper.update, trainer.train_epoch, sizes.rounds, device, sizes.repeats)
    flops = cue_flops(n, batch, steps)
    row.reference_flops = [flops] * len(row.reference_times)
    row.bioplast_flops = [flops] * len(row.bioplast_times)
    row.reference_mm = row.bioplast_mm = mm_rate(cue_shapes(n, batch, steps), device)
    return row


def measure_cue_epoch(sizes: Sizes, device: torch.device) -> Row:
    """Delayed cue, one epoch as ``protocols/papers/phases.yaml`` runs it (update + test
    batch, alignment as the protocol says), from the per-epoch wall time `bioplast.train`
    records, against the paper's epoch (one update)."""
    import bioplast
    n, batch = sizes.cue_units, 2 * sizes.cue_copies
    steps = CUE_STEPS + DELAY_STEPS + RESPONSE_STEPS
    row = Row("cue_epoch", f"delayed cue, N={n}, batch {batch}: one epoch as phases.yaml "
              "runs it", "paper replica (epoch = one update)", goal=">= 5x")
    paper = PhasesLoop(n, sizes.cue_copies, device=device)
    protocol = bioplast.load_protocol(PHASES_PROTOCOL, {
        **cue_settings(sizes, str(device)), "training.epochs": sizes.epoch_epochs,
        "record.trials": 0})
    paper.update()
    bioplast.train(protocol)  # warm-up
    for index in range(sizes.slow_rounds):
        order = [0, 1] if index % 2 == 0 else [1, 0]
        for side in order:
            if side == 0:
                row.reference_times.append(seconds(paper.update, device, sizes.repeats))
            else:
                walls = bioplast.train(protocol).history.wall_time[1:]
                row.bioplast_times.append(statistics.median(walls))
    flops = cue_flops(n, batch, steps)
    row.reference_flops = [flops] * len(row.reference_times)
    row.bioplast_flops = [flops] * len(row.bioplast_times)  # the update's work only
    row.reference_mm = row.bioplast_mm = mm_rate(cue_shapes(n, batch, steps), device)
    row.note = "bioplast: median per-epoch wall_time of bioplast.train (first epoch left out)"
    return row


def measure_cue_ensemble(sizes: Sizes, device: torch.device) -> list[Row]:
    """Delayed cue, E networks as one bioplast ensemble (``training.members``) against one
    bioplast network and against the paper's loop, one network at a time."""
    n, batch, members = sizes.cue_units, 2 * sizes.cue_copies, sizes.cue_members
    steps = CUE_STEPS + DELAY_STEPS + RESPONSE_STEPS
    settings = cue_settings(sizes, str(device))
    ensemble = bioplast_trainer(PHASES_PROTOCOL, {**settings, "training.members": members})
    single = bioplast_trainer(PHASES_PROTOCOL, settings)
    paper = PhasesLoop(n, sizes.cue_copies, device=device)
    label = f"delayed cue, ensemble of E={members} at N={n}, batch {batch}: per network"
    vs_single = Row("cue_ensemble", label, "bioplast, one network", goal=">= 3x",
                    bioplast_networks=members)
    vs_paper = Row("cue_ensemble_paper", label, "paper replica, one network at a time",
                   bioplast_networks=members)
    for function in (ensemble.train_epoch, single.train_epoch, paper.update):
        function()
    for index in range(sizes.slow_rounds):
        sides = [("e", ensemble.train_epoch, 1), ("s", single.train_epoch, sizes.repeats),
                 ("p", paper.update, sizes.repeats)]
        for name, function, repeats in (sides if index % 2 == 0 else sides[::-1]):
            elapsed = seconds(function, device, repeats)
            if name == "e":
                vs_single.bioplast_times.append(elapsed)
                vs_paper.bioplast_times.append(elapsed)
            elif name == "s":
                vs_single.reference_times.append(elapsed)
            else:
                vs_paper.reference_times.append(elapsed)
    flops = cue_flops(n, batch, steps)
    single_mm = mm_rate(cue_shapes(n, batch, steps), device)
    batched_mm = mm_rate(cue_shapes(n, batch, steps), device, members=members, repeats=3)
    for row in (vs_single, vs_paper):
        row.reference_flops = [flops] * len(row.reference_times)
        row.bioplast_flops = [flops * members] * len(row.bioplast_times)
        row.reference_mm, row.bioplast_mm = single_mm, batched_mm
    return [vs_single, vs_paper]


def parity_settings(sizes: Sizes, device: str) -> dict:
    return {"model.n_units": sizes.parity_units, "training.batch_size": sizes.parity_batch,
            "backend.device": device}


def measure_parity(sizes: Sizes, device: torch.device, n_max: int) -> Row:
    """N-parity at level N_max, one network: the paper's step vs bioplast's, each round on
    a trial of the same length (the one bioplast draws)."""
    units, batch = sizes.parity_units, sizes.parity_batch
    row = Row(f"parity_{n_max}", f"N-parity, {units} units, batch {batch}, multi-head "
              f"N = 2..{n_max}: one update", "paper replica", goal=">= 2x")
    paper = ParityLoop(n_max, units, batch, device=device)
    trainer = bioplast_trainer(PARITY_PROTOCOL, parity_settings(sizes, str(device)), n_max)
    probe = LengthProbe(trainer)
    # short trials are cheap and vary most in length: more rounds at small N
    rounds = sizes.slow_rounds if n_max >= 20 else sizes.rounds if n_max >= 5 \
        else 2 * sizes.rounds
    lengths = []
    for index in range(rounds + 1):  # the first round warms up
        length = probe.lengths()[0]
        t_paper = seconds(lambda: paper.update(length), device)
        t_bioplast = seconds(trainer.train_epoch, device)
        probe.check()
        if index:
            row.reference_times.append(t_paper)
            row.bioplast_times.append(t_bioplast)
            lengths.append(length)
    row.reference_flops = [parity_flops(units, batch, m) for m in lengths]
    row.bioplast_flops = list(row.reference_flops)
    mean_length = round((5 * n_max + 3) / 2)
    row.reference_mm = row.bioplast_mm = mm_rate(parity_shapes(units, batch, mean_length),
                                                 device)
    row.note = f"trial lengths {lengths}" + ("" if probe.all_matched else
                                             " (NOT matched: bioplast drew differently)")
    return row


def measure_parity_ensemble(sizes: Sizes, device: torch.device, n_max: int) -> list[Row]:
    """N-parity at level N_max: the 4 seeds as one bioplast ensemble against the same 4
    networks trained one after another by bioplast, and by the paper's loop."""
    units, batch, members = sizes.parity_units, sizes.parity_batch, sizes.parity_members
    settings = parity_settings(sizes, str(device))
    ensemble = bioplast_trainer(PARITY_PROTOCOL, {**settings, "training.members": members},
                                n_max)
    solos = [bioplast_trainer(PARITY_PROTOCOL, {**settings, "seed": seed}, n_max)
             for seed in range(members)]
    papers = [ParityLoop(n_max, units, batch, seed=seed, device=device)
              for seed in range(members)]
    probe = LengthProbe(ensemble)
    solo_probes = [LengthProbe(solo) for solo in solos]
    label = f"N-parity, {members} seeds, {units} units, batch {batch}, N = 2..{n_max}"
    vs_solo = Row(f"parity_ensemble_{n_max}", label + ": ensemble",
                  f"bioplast, {members} runs in a row", reference_networks=members,
                  bioplast_networks=members)
    vs_paper = Row(f"parity_ensemble_paper_{n_max}", label + ": ensemble",
                   f"paper replica, {members} runs in a row", reference_networks=members,
                   bioplast_networks=members)
    lengths_seen = []
    for index in range(sizes.rounds + 1):
        lengths = probe.lengths()
        for solo_probe in solo_probes:
            solo_probe.lengths()

        def in_a_row():
            for solo in solos:
                solo.train_epoch()

        def papers_in_a_row():
            for paper, length in zip(papers, lengths):
                paper.update(length)
        sides = [("e", ensemble.train_epoch), ("s", in_a_row), ("p", papers_in_a_row)]
        measured = {name: seconds(function, device)
                    for name, function in (sides if index % 2 == 0 else sides[::-1])}
        probe.check()
        for solo_probe in solo_probes:
            solo_probe.check()
        if index:
            vs_solo.bioplast_times.append(measured["e"])
            vs_paper.bioplast_times.append(measured["e"])
            vs_solo.reference_times.append(measured["s"])
            vs_paper.reference_times.append(measured["p"])
            lengths_seen.append(lengths)
    flops = [sum(parity_flops(units, batch, m) for m in lengths) for lengths in lengths_seen]
    mm = mm_rate(parity_shapes(units, batch, round((5 * n_max + 3) / 2)), device)
    matched = probe.all_matched and all(p.all_matched for p in solo_probes)
    for row in (vs_solo, vs_paper):
        row.reference_flops = row.bioplast_flops = flops
        row.reference_mm = row.bioplast_mm = mm
        row.note = f"trial lengths per member {lengths_seen}" + (
            "" if matched else " (NOT matched: bioplast drew differently)")
    return [vs_solo, vs_paper]


# ====================================================================== output
COLUMNS = ("configuration", "reference", "reference s/update", "bioplast s/update", "nets",
           "ratio", "goal", "FLOP/update", "reference mm fraction", "bioplast mm fraction")


def _number(value: float, digits: int = 3) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{digits}g}"


def markdown(summaries: list[dict]) -> str:
    """The table of ``summaries`` (`Row.summary`) as Markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in summaries:
        lines.append(
            f"| {s['configuration']} | {s['reference']} | "
            f"{_number(s['reference_s_per_update'])} | {_number(s['bioplast_s_per_update'])} "
            f"| {s['reference_networks']} / {s['bioplast_networks']} | "
            f"{_number(s['ratio'])}x | {s['goal']} | {s['flop_per_update']:.3g} | "
            f"{_number(s['reference_mm_fraction'], 2)} | "
            f"{_number(s['bioplast_mm_fraction'], 2)} |")
    return "\n".join(lines)


def engine_revision() -> str:
    """Where the measured bioplast comes from: its folder, git commit and whether that
    checkout has uncommitted changes (the engine measured may be work in progress)."""
    import subprocess
    import bioplast
    folder = Path(bioplast.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return f"{folder} @ {commit or 'no git'}{' + uncommitted changes' if dirty else ''}"


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "processor": platform.processor() or
            platform.machine(), "dtype": "float32", "bioplast": engine_revision()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def run(sizes: Sizes, device: torch.device, only: tuple[str, ...]) -> list[dict]:
    """Measure the configurations in ``only``; returns the rows' summaries."""
    jobs = []
    if "cue" in only:
        jobs.append(lambda: [measure_cue(sizes, device)])
    if "cue_epoch" in only:
        jobs.append(lambda: [measure_cue_epoch(sizes, device)])
    if "cue_ensemble" in only:
        jobs.append(lambda: measure_cue_ensemble(sizes, device))
    if "parity" in only:
        jobs += [lambda n=n: [measure_parity(sizes, device, n)] for n in sizes.parity_levels]
    if "parity_ensemble" in only:
        jobs += [lambda n=n: measure_parity_ensemble(sizes, device, n)
                 for n in sizes.parity_ensemble_levels]
    summaries = []
    for job in jobs:  # progress on stderr: a run stopped by a time limit still says something
        started = time.perf_counter()
        for row in job():
            summaries.append(row.summary())
            print(f"measured {row.configuration} vs {row.reference}: ratio "
                  f"{summaries[-1]['ratio']:.3g}x ({time.perf_counter() - started:.1f} s)",
                  file=sys.stderr, flush=True)
    return summaries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one round: a smoke run (seconds)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--only", default=",".join(CONFIG_KEYS),
                        help=f"comma-separated subset of {', '.join(CONFIG_KEYS)}")
    parser.add_argument("--rounds", type=int, help="rounds per configuration")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the comparison is per core: keep 1)")
    args = parser.parse_args(argv)
    only = tuple(key.strip() for key in args.only.split(",") if key.strip())
    unknown = [key for key in only if key not in CONFIG_KEYS]
    if unknown:
        parser.error(f"unknown --only entries {unknown} (choose from {CONFIG_KEYS})")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.rounds:
        sizes.rounds = sizes.slow_rounds = args.rounds
    started = time.perf_counter()
    summaries = run(sizes, device, only)
    info = {**machine(), "device": str(device), "quick": args.quick,
            "seconds": round(time.perf_counter() - started, 1)}
    print(f"papers' loops vs bioplast: {info['threads']} thread(s), {device}, float32, "
          f"torch {info['torch']}{' (--quick sizes)' if args.quick else ''}; "
          f"medians of interleaved rounds; ratio = bioplast network-epochs per core-second "
          f"/ reference's")
    print(f"bioplast measured: {info['bioplast']}")
    print()
    print(markdown(summaries))
    print()
    for s in summaries:
        if s["note"]:
            print(f"- {s['configuration']}: {s['note']}")
    print(f"({info['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": summaries},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
