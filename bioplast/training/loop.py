"""The training loop: batches -> rule updates -> history, with checkpoints.

`train` runs a `Protocol` epoch by epoch: ``steps_per_epoch`` updates on fresh batches (with
``training.fixed_batch``: on one batch per network and curriculum level, drawn once), then
``eval_batches`` test batches of ``eval_batch_size`` trials (loss, accuracy and reliability
per head), then the curriculum check on that accuracy, then the learning-rate schedule's
step on the epoch's mean training loss. It stops at the epoch budget, at
``target_accuracy``, or when the curriculum's last level is passed. Checkpoints
(``torch.save`` of tensors and plain values only, read back with ``weights_only=True``) are
written atomically every ``checkpoint_every`` epochs and at the end; ``resume=True``
continues from the last one and gives the same parameters and history as an uninterrupted
run (the random generators are part of the checkpoint). A non-finite loss stops the network
with status ``diverged`` (its last good parameters are kept; a run whose networks all
diverged keeps its last good checkpoint); Ctrl-C stops the run with status ``interrupted``.
Either way the result holds the history so far.

An ensemble (``training.members: E``, or a list of protocols that differ only in seed,
optimizer hyperparameters, clipping and parameter initialization) trains its networks as
one batched model along the ``member`` axis; each network gets exactly the parameters and
history it would get alone (tested), including its own curriculum level and early stop.
Members whose batches differ in shape (other level, other trial length) run in separate
batched passes within the same update.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import schema
from ..allocation import chunk_members, keep_freed_memory
from ..backends import spec
from ..backends.torch import DTYPES, torch_device
from ..compile_torch import TorchStepper
from ..curricula import Curriculum
from ..ensembles import check_ensemble, member_protocols
from ..optimizers import MemberOptimizer
from ..protocol import Protocol, backend_options
from ..regularizers import MemberWeighted
from ..backends import get_backend
from ..rules import TrainingContext, forward, true_gradient
from ..tasks import Batch, Level, stack_batches
from .checkpoint import Checkpointing
from .records import History, MemberResult, TestTrials, TrainingResult, mean_of_active


def _member_batch(batch: Batch, index: int) -> Batch:
    """Member ``index`` of a stacked batch (`bioplast.tasks.stack_batches`)."""
    return Batch(batch.inputs[index], batch.targets[index], batch.mask[index],
                 {key: value[index] for key, value in batch.conditions.items()})


def _mean_scores(scored: list[tuple]) -> tuple[float, np.ndarray, np.ndarray]:
    """The mean over test batches of their `Trainer.scores`: loss, accuracy and
    reliability ``(n_heads,)``."""
    losses, accuracies, reliabilities = zip(*scored)
    return (float(np.mean(losses)), np.mean(np.stack(accuracies), axis=0),
            np.mean(np.stack(reliabilities), axis=0))


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (independent streams per purpose)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> 1)


@dataclass
class Member:
    """The training state of one network of an ensemble besides its parameters: its
    protocol (seed, hyperparameters), random streams, curriculum and history."""

    protocol: Protocol
    rng: np.random.Generator
    generator: torch.Generator
    curriculum: Curriculum
    history: History
    finished: str = ""  # why this network stopped, once it did
    status: str = schema.STATUS_COMPLETE
    #: with ``training.fixed_batch``: (level, batch, initial state) of every update
    fixed: tuple | None = None

    @property
    def seed(self) -> int:
        return self.protocol.seed

    def generator_for(self, *purpose: int) -> torch.Generator:
        """A fresh generator seeded for one purpose (evaluation, comparison, test)."""
        generator = torch.Generator(device=self.generator.device)
        generator.manual_seed(_seed(self.seed, *purpose))
        return generator

    def draw(self, rng: np.random.Generator, batch_size: int, level: Level):
        """A batch at ``level`` and its initial state, from ``rng``."""
        batch = self.protocol.task.sample(batch_size, rng, level)
        initial = self.protocol.model.initial_state(batch.n_trials,
                                                    seed=int(rng.integers(2**62)))
        return batch, initial


class Trainer(Checkpointing):
    """The state of a run: the parameters of its networks ``(member, ...)``, their
    optimizers and rule state, and one `Member` per network.

    ``protocols`` holds one protocol per member (`bioplast.ensembles.member_protocols`);
    they must fit one batched model (`bioplast.ensembles.check_ensemble`). Every network
    follows exactly the path it would follow if trained alone: its own seed, batches,
    noise, optimizer state, curriculum level and early stop. Its checkpoint
    (`state_dict`, `save_checkpoint`, `load_checkpoint`) comes from
    `bioplast.training.checkpoint.Checkpointing`.
    """

    def __init__(self, protocols: list[Protocol]):
        check_ensemble(protocols)
        keep_freed_memory()
        self.protocols = protocols
        first = protocols[0]
        model, backend = first.model, first.schema.backend
        self.device = torch_device(backend.device)  # checked when the protocol was loaded
        self.dtype = DTYPES[backend.dtype]
        self.stepper = TorchStepper(model, self.dtype, self.device,
                                    noise=first.training.noise, engine=backend.engine)
        self.members = []
        for protocol in protocols:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(_seed(protocol.seed, 1))
            self.members.append(Member(
                protocol, np.random.default_rng(_seed(protocol.seed, 2)), generator,
                Curriculum(protocol.task),
                History(protocol.task.n_heads, [name for name, spec in model.params.items()
                                                if spec.trainable])))
        initial = [protocol.model.init_params(protocol.seed) for protocol in protocols]
        self.params = {name: torch.as_tensor(np.stack([values[name] for values in initial]),
                                             dtype=self.dtype, device=self.device)
                       for name in model.params}
        # rules that only need forward passes run them on a backend without torch's step
        self.backend = None if "online_step" in spec.CAPABILITIES[backend.name] else \
            get_backend(backend.name, **backend_options(backend))
        self.rule = first.rule
        weights = [[p.regularizers[i].config.weight for p in protocols]
                   for i in range(len(first.regularizers))]
        self.regularizer_weights = [
            torch.tensor(w, dtype=self.dtype, device=self.device) if len(set(w)) > 1 else None
            for w in weights]
        everyone = list(range(len(protocols)))
        self.rule_state = self.rule.init_state(self.context(everyone), self.params)
        self.optimizer = MemberOptimizer(
            [p.rule.config.optimizer for p in protocols],
            [p.rule.config.grad_clip for p in protocols],
            self.rule.trainable(self.context(everyone), self.params))
        self.next_epoch = 0
        #: member -> (loss, accuracy, reliability per head) on its epoch's last training batch
        self.training_scores: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}

    @property
    def protocol(self) -> Protocol:
        return self.protocols[0]

    def context(self, members: list[int], generators=None) -> TrainingContext:
        """The training context of some members (their own generators by default; their
        own regularizer weights where these differ between members)."""
        first = self.protocols[0]
        index = self._index(members)
        regularizers = [regularizer if weights is None else
                        MemberWeighted(regularizer, weights[index])
                        for regularizer, weights in zip(first.regularizers,
                                                        self.regularizer_weights)]
        return TrainingContext(first.model, first.task, self.stepper,
                               generators or [self.members[i].generator for i in members],
                               regularizers, self.backend)

    def active(self) -> list[int]:
        return [index for index, member in enumerate(self.members) if not member.finished]

    # ------------------------------------------------------------------ groups
    def groups(self, indices: list[int], draws: dict):
        """Members that can share a batched pass: same level and same batch shape.
        ``draws[i]`` is ``(level, batch, initial state)``; yields ``(indices, level,
        stacked batch, stacked initial state)``."""
        grouped: dict = {}
        for index in indices:
            level, batch, _ = draws[index]
            grouped.setdefault((level, batch.inputs.shape, batch.targets.shape), []).append(
                index)
        n_units = self.protocols[0].model.n_units
        for (level, shape, _), group in grouped.items():
            # on the CPU, runs of members small enough for reused memory (see allocation)
            runs = chunk_members(group, shape[0] * shape[1] * n_units) \
                if self.device.type == "cpu" else [group]
            for members in runs:
                batch = stack_batches([draws[i][1] for i in members])
                initial = {name: np.stack([draws[i][2][name] for i in members])
                           for name in draws[members[0]][2]}
                yield members, level, batch, initial

    def _index(self, members: list[int]) -> torch.Tensor:
        return torch.as_tensor(members, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ epochs
    def train_epoch(self) -> dict[int, tuple[float, float]]:
        """One epoch of updates of every active network: ``{member: (mean loss, mean
        gradient norm)}``. A network whose loss, gradient norm or parameters become
        non-finite gets its parameters from before that update back and stops
        (``status`` diverged); its row holds the finite losses of the epoch so far."""
        training = self.protocols[0].training
        started = self.active()
        losses = {i: [] for i in started}
        norms = {i: [] for i in started}
        self.training_scores = {}
        for step in range(training.steps_per_epoch):
            active = self.active()
            if not active:
                break
            draws = {i: self.training_draw(i) for i in active}
            last = step == training.steps_per_epoch - 1 and training.score_on == "training"
            for members, level, batch, initial in self.groups(active, draws):
                loss, norm = self.update_group(members, level, batch, initial, score=last)
                for j, i in enumerate(members):
                    if self.members[i].status != schema.STATUS_DIVERGED:
                        losses[i].append(loss[j])
                        norms[i].append(norm[j])
        return {i: (float(np.mean(losses[i])) if losses[i] else math.nan,
                    float(np.mean(norms[i])) if norms[i] else math.nan) for i in started}

    def training_draw(self, index: int) -> tuple:
        """``(level, batch, initial state)`` of member ``index``'s next update at its
        curriculum level: fresh from its training stream, or with ``training.fixed_batch``
        the one batch of this level, drawn at its first update from a stream of its own
        (seed, level N), so a resumed run draws the same one again."""
        member, training = self.members[index], self.protocols[0].training
        level = member.curriculum.level()
        if not training.fixed_batch:
            return level, *member.draw(member.rng, training.batch_size, level)
        if member.fixed is None or member.fixed[0] != level:
            n = () if member.curriculum.n is None else (member.curriculum.n,)
            rng = np.random.default_rng(_seed(member.seed, 10, *n))
            member.fixed = (level, *member.draw(rng, training.batch_size, level))
        return member.fixed

    def update_group(self, members: list[int], level: Level, batch: Batch, initial,
                     score: bool = False):
        """One rule update of ``members`` on their stacked batch: ``(loss, norm)`` lists.
        With ``score``, the batch's `scores` per member (from the outputs before the
        update) go to ``self.training_scores``."""
        index = self._index(members)
        params = {name: value[index] for name, value in self.params.items()}
        before = {name: value.clone() for name, value in params.items()}
        state = {name: value[index] for name, value in self.rule_state.items()}
        optimizer = self.optimizer.select(index)
        context = self.context(members)
        context.keep_outputs = score
        loss, norm = self.rule.update(context, params, batch, initial, level, state, optimizer)
        if score:
            outputs = context.outputs
            if outputs is None:  # the rule made no plain forward pass: one on this batch
                own = self.context(members, [self.members[i].generator_for(9, self.next_epoch)
                                             for i in members])  # training's noise untouched
                with torch.no_grad():
                    outputs, _ = forward(own, before, batch, initial, scored_only=True)
            self.training_scores.update(self.scores(members, level, batch, outputs))
        finite = torch.stack([torch.isfinite(v.reshape(len(members), -1)).all(dim=1)
                              for v in params.values()]).all(dim=0)
        device = loss.device
        loss, norm, finite = torch.stack([loss.detach().double(),
                                          norm.detach().double().to(device),
                                          finite.double().to(device)]).cpu().numpy()
        finite = finite.astype(bool)
        with torch.no_grad():
            for j, i in enumerate(members):
                bad = [k for k, v in (("loss", loss[j]), ("grad_norm", norm[j]))
                       if not math.isfinite(v)]
                if not finite[j]:
                    bad.append("parameters")
                if bad:
                    for name, value in params.items():
                        value[j] = before[name][j]
                    self.diverge(i, f"non-finite {', '.join(bad)} at epoch {self.next_epoch} "
                                    f"(loss {loss[j]:.4g})")
            for name, value in params.items():
                self.params[name][index] = value
            for name, value in state.items():
                self.rule_state[name][index] = value
        self.optimizer.assign(index, optimizer)
        return list(loss), list(norm)

    def diverge(self, index: int, message: str) -> None:
        member = self.members[index]
        member.finished, member.status = f"training diverged: {message}", \
            schema.STATUS_DIVERGED

    def compare_with_bptt(self, members: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """Cosine between the rule's gradient estimate and the exact BPTT gradient on one
        fresh batch (both with the same noise stream), and the norm of each, per trained
        parameter, for each of ``members``."""
        training = self.protocols[0].training
        draws = {}
        for i in members:
            member = self.members[i]
            rng = np.random.default_rng(_seed(member.seed, 7, self.next_epoch))
            level = member.curriculum.level()
            draws[i] = (level, *member.draw(rng, training.batch_size, level))
        parameters = self.members[0].history.parameters
        results = {}
        for group, level, batch, initial in self.groups(members, draws):
            index = self._index(group)
            params = {name: value[index] for name, value in self.params.items()}
            # the rule's own state (e.g. random feedback), copied: comparing changes nothing
            state = {name: value[index] for name, value in self.rule_state.items()}

            def context():
                return self.context(group, [self.members[i].generator_for(8, self.next_epoch)
                                         for i in group])
            with torch.no_grad():
                estimate, _ = self.rule.estimate(context(), params, batch, initial, level,
                                                 state)
            _, exact = true_gradient(context(), params, batch, initial, level)
            for j, i in enumerate(group):
                result = {name: np.full(len(parameters), np.nan)
                          for name in History.PER_PARAMETER}
                for k, name in enumerate(parameters):
                    if name not in estimate:
                        continue
                    a = estimate[name][j].double().flatten()
                    b = exact[name][j].double().flatten()
                    norm_a, norm_b = float(a.norm()), float(b.norm())
                    result["update_norm"][k], result["gradient_norm"][k] = norm_a, norm_b
                    if norm_a > 0 and norm_b > 0:
                        result["alignment"][k] = float(a @ b) / (norm_a * norm_b)
                results[i] = result
        return results

    def scores(self, members: list[int], level: Level, batch: Batch, outputs
               ) -> dict[int, tuple[float, np.ndarray, np.ndarray]]:
        """Test loss, accuracy and reliability per head ``(n_heads,)`` of each of
        ``members`` on their stacked ``batch`` from its ``outputs`` ``(member, trial, time,
        output)``."""
        task = self.protocols[0].task
        loss = task.loss_value(outputs, torch.as_tensor(batch.targets, dtype=outputs.dtype,
                                                        device=outputs.device),
                               torch.as_tensor(batch.mask, dtype=outputs.dtype,
                                               device=outputs.device),
                               level, per_trial=True).mean(dim=-1).cpu().numpy()
        outputs = outputs.cpu().numpy()
        scored = {}
        for j, i in enumerate(members):
            own = _member_batch(batch, j)
            scored[i] = (float(loss[j]), task.score(outputs[j], own, level),
                         task.reliability(outputs[j], own, level))
        return scored

    def evaluate(self, members: list[int], levels: dict[int, Level] | None = None
                 ) -> dict[int, tuple[float, np.ndarray, np.ndarray]]:
        """Mean test loss, accuracy and reliability per head over ``eval_batches`` fresh
        batches for each of ``members`` (from streams of their own, so evaluation does not
        change training), at each member's curriculum level or at ``levels[member]``."""
        training = self.protocols[0].training
        size = training.eval_batch_size or training.batch_size
        rngs = {i: np.random.default_rng(_seed(self.members[i].seed, 3, self.next_epoch))
                for i in members}
        generators = {i: self.members[i].generator_for(4, self.next_epoch) for i in members}
        scored = {i: [] for i in members}
        with torch.no_grad():
            for _ in range(training.eval_batches):
                draws = {}
                for i in members:
                    level = levels[i] if levels else self.members[i].curriculum.level()
                    draws[i] = (level, *self.members[i].draw(rngs[i], size, level))
                for group, level, batch, initial in self.groups(members, draws):
                    context = self.context(group, [generators[i] for i in group])
                    params = {k: v[self._index(group)] for k, v in self.params.items()}
                    outputs, _ = forward(context, params, batch, initial, scored_only=True)
                    for i, scores in self.scores(group, level, batch, outputs).items():
                        scored[i].append(scores)
        # inactive heads are NaN in every batch and stay NaN
        return {i: _mean_scores(scored[i]) for i in members}

    def test_trials(self) -> list[TestTrials | None]:
        record = self.protocols[0].schema.record
        if record.trials == 0:
            return [None] * len(self.members)
        model = self.protocols[0].model
        names = record.variables if record.variables is not None else \
            [*model.state_names, *model.subexpressions]
        draws = {}
        for i, member in enumerate(self.members):
            rng = np.random.default_rng(_seed(member.seed, 5))
            level = member.curriculum.level()
            draws[i] = (level, *member.draw(rng, record.trials, level))
        tests = [None] * len(self.members)
        for group, level, batch, initial in self.groups(list(draws), draws):
            context = self.context(group, [self.members[i].generator_for(6) for i in group])
            params = {k: v[self._index(group)] for k, v in self.params.items()}
            with torch.no_grad():
                outputs, recorded = forward(context, params, batch, initial, record=names)
            outputs = outputs.cpu().numpy()
            recorded = {n: recorded[n].cpu().numpy() for n in names}
            for j, i in enumerate(group):
                tests[i] = TestTrials(draws[i][1], draws[i][2], outputs[j],
                                      {n: recorded[n][j] for n in names})
        return tests

    def member_params(self, index: int) -> dict[str, np.ndarray]:
        """The parameters of member ``index`` now, as float64 arrays."""
        return {k: v.detach()[index].cpu().numpy().astype(np.float64)
                for k, v in self.params.items()}

    def finish_epoch(self, index: int, row: tuple, evaluation: tuple, wall_time: float,
                     lr: float, comparison) -> None:
        """Record one epoch of a member (``lr``: the learning rate of its updates) and
        apply its stopping rules and curriculum."""
        member, training = self.members[index], self.protocols[0].training
        eval_loss, accuracy, reliability = evaluation
        member.history.append(*row, eval_loss, accuracy, reliability, member.curriculum.n,
                              wall_time, lr, comparison)
        if not math.isfinite(eval_loss):
            self.diverge(index, f"non-finite test loss after epoch {self.next_epoch}")
            return
        curriculum, record = member.curriculum, self.protocols[0].schema.record
        if record.levels and curriculum.active and curriculum.passed(accuracy) and \
                curriculum.n not in member.history.passed:
            member.history.passed[curriculum.n] = (self.next_epoch, self.member_params(index))
        if record.snapshots_every and (self.next_epoch % record.snapshots_every == 0 or
                                       self.next_epoch == training.epochs - 1):
            member.history.snapshots[self.next_epoch] = self.member_params(index)
        if member.curriculum.finished(accuracy) and training.stop_at_max_level:
            member.finished = f"last curriculum level (N = {member.curriculum.n}) passed"
        elif training.target_accuracy is not None and \
                mean_of_active(accuracy) >= training.target_accuracy:
            member.finished = f"target accuracy {training.target_accuracy} reached"
        member.curriculum.update(accuracy)


def train(protocol: Protocol | list[Protocol], *, checkpoint: str | Path | None = None,
          resume: bool = False, progress: bool = False,
          member_coords: dict[str, list] | None = None) -> TrainingResult:
    """Train as ``protocol`` says; see the module docstring.

    Parameters
    ----------
    protocol : Protocol or list of Protocol
        One protocol (``training.members: E`` trains E networks with seeds ``seed ...
        seed + E - 1``), or one protocol per member of an ensemble.
    checkpoint : path, optional
        Checkpoint file (written every ``training.checkpoint_every`` epochs and at the end).
    resume : bool
        Continue from ``checkpoint`` if it exists.
    progress : bool
        Show a progress bar (epoch, loss, accuracy, level) on stderr.
    member_coords : dict, optional
        What varies between the members of a list of protocols (for the result).
    """
    protocols = member_protocols(protocol) if isinstance(protocol, Protocol) else protocol
    if isinstance(protocol, Protocol) and len(protocols) > 1 and member_coords is None:
        member_coords = {"seed": [p.seed for p in protocols]}
    trainer = Trainer(protocols)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    resumed_from = None
    if resume and checkpoint is not None and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
        resumed_from = trainer.next_epoch
    # a fresh start keeps an old run's checkpoint until its own first one replaces it
    training = protocols[0].training
    interrupted = False
    bar = tqdm(total=training.epochs, initial=trainer.next_epoch,
               desc=protocols[0].schema.name, unit="epoch", disable=not progress, leave=True)
    try:
        while trainer.next_epoch < training.epochs and trainer.active():
            started = time.perf_counter()
            members = trainer.active()
            every = training.alignment_every
            # a rule whose estimate is the exact gradient is not compared with itself,
            # unless asked to (a check of the comparison)
            comparison = trainer.compare_with_bptt(members) \
                if every and trainer.next_epoch % every == 0 and \
                (training.alignment_of_exact or not trainer.rule.exact) else {}
            rows = trainer.train_epoch()
            alive = [i for i in members if not trainer.members[i].finished]
            if training.score_on == "training":
                evaluation = {i: trainer.training_scores[i] for i in alive}
            else:
                evaluation = trainer.evaluate(alive) if alive else {}
            wall_time = time.perf_counter() - started
            lrs = trainer.optimizer.learning_rates()
            for i in members:
                if i in evaluation:
                    trainer.finish_epoch(i, rows[i], evaluation[i], wall_time, lrs[i],
                                         comparison.get(i))
                else:  # diverged during the epoch: the finite part of its row
                    member = trainer.members[i]
                    missing = np.full(member.history.n_heads, np.nan)
                    member.history.append(*rows[i], math.nan, missing, missing,
                                          member.curriculum.n, math.nan, lrs[i])
            # the schedules of the networks that train on step on their mean training loss
            trainer.optimizer.end_epoch({i: rows[i][0] for i in trainer.active()})
            trainer.next_epoch += 1
            _show(bar, trainer, evaluation, rows)
            last = not trainer.active() or trainer.next_epoch == training.epochs
            if checkpoint is not None and (trainer.next_epoch % training.checkpoint_every == 0
                                           or last):
                if not all(m.status == schema.STATUS_DIVERGED for m in trainer.members):
                    trainer.save_checkpoint(checkpoint)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    return _result(trainer, interrupted, member_coords or {},
                   {"epochs_completed": trainer.next_epoch, "resumed_from_epoch": resumed_from,
                    "checkpoint": str(checkpoint) if checkpoint else None})


def _show(bar, trainer: Trainer, evaluation: dict, rows: dict) -> None:
    """Progress: the loss and accuracy of a single network, or of the ensemble's mean."""
    if not bar.disable:
        loss = np.nanmean([row[0] for row in rows.values()]) if rows else math.nan
        accuracy = np.nanmean([mean_of_active(a) for _, a, _ in evaluation.values()]) \
            if evaluation else math.nan
        extra = {}
        if len(trainer.members) > 1:
            extra["active"] = len(trainer.active())
        elif trainer.members[0].curriculum.active:
            extra["N"] = trainer.members[0].curriculum.n
        bar.set_postfix(loss=f"{loss:.4g}", acc=f"{accuracy:.3f}", **extra)
    bar.update(1)


def _result(trainer: Trainer, interrupted: bool, member_coords: dict,
            info: dict) -> TrainingResult:
    members = trainer.members
    diverged = all(m.status == schema.STATUS_DIVERGED for m in members)
    tests = trainer.test_trials() if not diverged else [None] * len(members)
    results = []
    for index, member in enumerate(members):
        status = schema.STATUS_INTERRUPTED if interrupted and not member.finished \
            else member.status
        message = member.finished or (f"interrupted during epoch {trainer.next_epoch}"
                                      if interrupted else "epoch budget used")
        params = trainer.member_params(index)
        test = tests[index] if member.status != schema.STATUS_DIVERGED else None
        results.append(MemberResult(member.protocol, params, member.history, status, message,
                                    test, len(member.history)))
    if interrupted:
        status = schema.STATUS_INTERRUPTED
        message = f"interrupted during epoch {trainer.next_epoch}"
    elif diverged:
        status, message = schema.STATUS_DIVERGED, results[0].message if len(members) == 1 \
            else "every member diverged"
    else:
        status = schema.STATUS_COMPLETE
        message = results[0].message if len(members) == 1 else \
            f"{sum(r.status == schema.STATUS_COMPLETE for r in results)} of {len(results)} " \
            "members complete"
    return TrainingResult(results, status, message, info, member_coords)
