"""The training loop: batches -> rule updates -> history, with checkpoints.

`train` runs a `Protocol` epoch by epoch: ``steps_per_epoch`` updates on fresh batches,
then ``eval_batches`` test batches (loss and accuracy per head), then the curriculum
check. It stops at the epoch budget, at ``target_accuracy``, or when the curriculum's last
level is passed. Checkpoints (``torch.save`` of tensors and plain values only, read back
with ``weights_only=True``) are written atomically every ``checkpoint_every`` epochs and at
the end; ``resume=True`` continues from the last one and gives the same parameters and
history as an uninterrupted run (the random generators are part of the checkpoint).
A non-finite loss stops the run with status ``diverged`` (the last good checkpoint is
kept); Ctrl-C stops it with status ``interrupted``. Either way the result holds the
history so far.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import schema
from .backends.torch import DTYPES, torch_device
from .compile_torch import TorchStepper
from .curricula import Curriculum
from .errors import InputError
from .files import atomic_write
from .protocol import Protocol
from .backends import get_backend
from .rules import TrainingContext, forward, true_gradient
from .tasks import Batch, Level

CHECKPOINT_FORMAT = 1


@dataclass
class History:
    """Per-epoch records: training loss (mean over the epoch's updates), gradient norm,
    test loss, accuracy per head (NaN for inactive heads), curriculum level N (-1 without
    a curriculum) and wall time in seconds."""

    n_heads: int
    parameters: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    accuracy: list[np.ndarray] = field(default_factory=list)
    level: list[int] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    alignment: list[np.ndarray] = field(default_factory=list)
    update_norm: list[np.ndarray] = field(default_factory=list)
    gradient_norm: list[np.ndarray] = field(default_factory=list)

    SCALARS = ("loss", "grad_norm", "eval_loss", "wall_time")
    PER_PARAMETER = ("alignment", "update_norm", "gradient_norm")

    def __len__(self) -> int:
        return len(self.loss)

    def append(self, loss: float, grad_norm: float, eval_loss: float, accuracy: np.ndarray,
               level: int | None, wall_time: float,
               comparison: dict[str, np.ndarray] | None = None) -> None:
        """One epoch; ``comparison`` holds ``alignment``, ``update_norm`` and
        ``gradient_norm`` per parameter when the rule was compared with BPTT."""
        missing = np.full(len(self.parameters), np.nan)
        for name in self.PER_PARAMETER:
            getattr(self, name).append((comparison or {}).get(name, missing))
        self.loss.append(loss)
        self.grad_norm.append(grad_norm)
        self.eval_loss.append(eval_loss)
        self.accuracy.append(accuracy)
        self.level.append(-1 if level is None else level)
        self.wall_time.append(wall_time)

    def accuracy_array(self) -> np.ndarray:
        return np.array(self.accuracy).reshape(len(self), self.n_heads)

    def per_parameter(self, name: str) -> np.ndarray:
        """``(epoch, parameter)`` array of ``alignment``, ``update_norm`` or
        ``gradient_norm`` (NaN in epochs without a comparison)."""
        return np.array(getattr(self, name)).reshape(len(self), len(self.parameters))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {name: torch.tensor(getattr(self, name), dtype=torch.float64)
                 for name in self.SCALARS}
        state["accuracy"] = torch.as_tensor(self.accuracy_array(), dtype=torch.float64)
        state["level"] = torch.tensor(self.level, dtype=torch.int64)
        for name in self.PER_PARAMETER:
            state[name] = torch.as_tensor(self.per_parameter(name), dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.SCALARS:
            setattr(self, name, state[name].tolist())
        self.accuracy = list(state["accuracy"].numpy())
        self.level = state["level"].tolist()
        for name in self.PER_PARAMETER:
            setattr(self, name, list(state[name].numpy()))


@dataclass
class TestTrials:
    """Recorded test trials at the end of training."""

    batch: Batch
    initial_state: dict[str, np.ndarray]
    outputs: np.ndarray
    recorded: dict[str, np.ndarray]


@dataclass
class TrainingResult:
    protocol: Protocol
    params: dict[str, np.ndarray]
    history: History
    status: str
    message: str
    test: TestTrials | None
    info: dict[str, Any]


class _Diverged(Exception):
    pass


def _first_difference(old: str, new: str) -> str:
    """The first line where two protocol texts differ, for messages."""
    for before, after in zip(old.splitlines() + [""], new.splitlines() + [""]):
        if before != after:
            return f"checkpoint: '{before.strip()}', now: '{after.strip()}'"
    return "same text"


def mean_of_active(accuracy: np.ndarray) -> float:
    """Mean accuracy over the active heads (the non-NaN entries)."""
    active = accuracy[~np.isnan(accuracy)]
    return float(active.mean()) if active.size else math.nan


def checkpoint_path(output: str | Path) -> Path:
    """Where the checkpoint of a run writing ``output`` lives."""
    output = Path(output)
    return output.with_name(output.name + ".checkpoint.pt")


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (independent streams per purpose)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> 1)


class Trainer:
    """The state of one training run (parameters, optimizer, generators, curriculum)."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        model, backend = protocol.model, protocol.schema.backend
        self.device = torch_device(backend.device)  # checked when the protocol was loaded
        self.dtype = DTYPES[backend.dtype]
        self.stepper = TorchStepper(model, self.dtype, self.device,
                                    noise=protocol.training.noise)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(_seed(protocol.seed, 1))
        self.rng = np.random.default_rng(_seed(protocol.seed, 2))
        self.params = {name: torch.as_tensor(value[None], dtype=self.dtype, device=self.device)
                       for name, value in model.init_params(protocol.seed).items()}
        self.backend = get_backend(backend.name, target=backend.target) \
            if backend.name != "torch" else None
        self.context = TrainingContext(model, protocol.task, self.stepper, self.generator,
                                       protocol.regularizers, self.backend)
        self.rule_state = protocol.rule.init_state(self.context, self.params)
        self.curriculum = Curriculum(protocol.task)
        self.history = History(protocol.task.n_heads, [name for name, spec in
                                                       model.params.items() if spec.trainable])
        self.next_epoch = 0
        self.finished = ""  # why training stopped early, once it did

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "protocol": self.protocol.text,
                "next_epoch": self.next_epoch,
                "params": {k: v.detach().clone() for k, v in self.params.items()},
                "rule": self.protocol.rule.state_dict(self.rule_state),
                "rng": json.dumps(self.rng.bit_generator.state),
                "generator": self.generator.get_state(),
                "curriculum": self.curriculum.state_dict(),
                "history": self.history.state_dict(), "finished": self.finished}

    def save_checkpoint(self, path: Path) -> None:
        with atomic_write(path) as temporary:
            torch.save(self.state_dict(), temporary)

    def load_checkpoint(self, path: Path) -> None:
        try:
            saved = torch.load(path, weights_only=True, map_location=self.device)
        except Exception:  # a foreign or damaged file: say so, do not guess
            raise InputError("cannot read the checkpoint (damaged, or not a bioplast "
                             "checkpoint); delete it or run without --resume",
                             file=str(path)) from None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise InputError("not a bioplast checkpoint of this version; delete it or run "
                             "without --resume", file=str(path))
        if saved.get("protocol") != self.protocol.text:
            raise InputError("the checkpoint belongs to another protocol or other settings ("
                             f"{_first_difference(saved.get('protocol', ''), self.protocol.text)}"
                             "); run without --resume to start over", file=str(path))
        with torch.no_grad():
            for name, value in saved["params"].items():
                self.params[name].copy_(value)
        self.protocol.rule.load_state_dict(self.rule_state, saved["rule"])
        self.rng.bit_generator.state = json.loads(saved["rng"])
        self.generator.set_state(saved["generator"])
        self.curriculum.load_state_dict(saved["curriculum"])
        self.history.load_state_dict(saved["history"])
        self.next_epoch = int(saved["next_epoch"])
        self.finished = str(saved["finished"])

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, level: Level) -> tuple[float, float]:
        """One epoch of updates: ``(mean loss, mean gradient norm)``.

        Raises `_Diverged` (parameters restored to before the bad update) when a loss, a
        gradient norm or a parameter is not finite; ``self.partial`` keeps the finite
        losses and norms of the epoch so far.
        """
        training, model, task = self.protocol.training, self.protocol.model, self.protocol.task
        self.partial = losses, norms = [], []
        for step in range(training.steps_per_epoch):
            batch = task.sample(training.batch_size, self.rng, level)
            initial = model.initial_state(batch.n_trials, seed=int(self.rng.integers(2**62)))
            before = {k: v.detach().clone() for k, v in self.params.items()}
            self.params, self.rule_state, metrics = self.protocol.rule.update(
                self.context, self.params, batch, initial, level, self.rule_state)
            bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics.get(k, 0.0))]
            bad += [k for k, v in self.params.items() if not bool(torch.isfinite(v).all())]
            if bad:
                with torch.no_grad():
                    for name, value in before.items():
                        self.params[name].copy_(value)
                raise _Diverged(f"non-finite {', '.join(bad)} at epoch {self.next_epoch}, "
                                f"update {step} (loss {metrics['loss']:.4g})")
            losses.append(metrics["loss"])
            norms.append(metrics.get("grad_norm", math.nan))
        return float(np.mean(losses)), float(np.mean(norms))

    def evaluation_context(self, *purpose: int) -> TrainingContext:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(_seed(self.protocol.seed, *purpose))
        return TrainingContext(self.protocol.model, self.protocol.task, self.stepper, generator,
                               self.protocol.regularizers, self.backend)

    def compare_with_bptt(self, level: Level) -> dict[str, np.ndarray]:
        """Cosine between the rule's gradient estimate and the exact BPTT gradient on one
        fresh batch (both with the same noise stream), and the norm of each, per
        trained parameter."""
        training, task, model = self.protocol.training, self.protocol.task, self.protocol.model
        rng = np.random.default_rng(_seed(self.protocol.seed, 7, self.next_epoch))
        batch = task.sample(training.batch_size, rng, level)
        initial = model.initial_state(batch.n_trials, seed=int(rng.integers(2**62)))
        # the rule's own state (e.g. random feedback), copied: comparing changes nothing
        state = {k: v.clone() if torch.is_tensor(v) else v for k, v in self.rule_state.items()}
        with torch.no_grad():
            estimate, _ = self.protocol.rule.estimate(self.evaluation_context(8, self.next_epoch),
                                                      self.params, batch, initial, level, state)
        _, exact = true_gradient(self.evaluation_context(8, self.next_epoch), self.params,
                                 batch, initial, level)
        result = {name: np.full(len(self.history.parameters), np.nan)
                  for name in History.PER_PARAMETER}
        for index, name in enumerate(self.history.parameters):
            if name not in estimate:
                continue
            a, b = estimate[name].double().flatten(), exact[name].double().flatten()
            norm_a, norm_b = float(a.norm()), float(b.norm())
            result["update_norm"][index], result["gradient_norm"][index] = norm_a, norm_b
            if norm_a > 0 and norm_b > 0:
                result["alignment"][index] = float(a @ b) / (norm_a * norm_b)
        return result

    def evaluate(self, level: Level) -> tuple[float, np.ndarray]:
        """Mean test loss and accuracy per head over ``eval_batches`` fresh batches (drawn
        from a stream of their own, so evaluation does not change training)."""
        training, task, model = self.protocol.training, self.protocol.task, self.protocol.model
        rng = np.random.default_rng(_seed(self.protocol.seed, 3, self.next_epoch))
        context = self.evaluation_context(4, self.next_epoch)
        losses, accuracies = [], []
        with torch.no_grad():
            for _ in range(training.eval_batches):
                batch = task.sample(training.eval_batch_size or training.batch_size, rng, level)
                initial = model.initial_state(batch.n_trials, seed=int(rng.integers(2**62)))
                outputs, _ = forward(context, self.params, batch, initial)
                losses.append(float(task.loss_value(outputs, context.tensor(batch.targets),
                                                    context.tensor(batch.mask), level)))
                accuracies.append(task.score(outputs[0].cpu().numpy(), batch, level))
        loss = float(np.mean(losses))
        if not math.isfinite(loss):
            raise _Diverged(f"non-finite test loss after epoch {self.next_epoch}")
        # inactive heads are NaN in every batch and stay NaN
        return loss, np.mean(np.stack(accuracies), axis=0)

    def test_trials(self) -> TestTrials | None:
        record = self.protocol.schema.record
        if record.trials == 0:
            return None
        model, task = self.protocol.model, self.protocol.task
        rng = np.random.default_rng(_seed(self.protocol.seed, 5))
        batch = task.sample(record.trials, rng, self.curriculum.level())
        initial = model.initial_state(batch.n_trials, seed=int(rng.integers(2**62)))
        names = record.variables if record.variables is not None else \
            [*model.state_names, *model.subexpressions]
        with torch.no_grad():
            outputs, recorded = forward(self.evaluation_context(6), self.params, batch,
                                        initial, record=names)
        return TestTrials(batch, initial, outputs[0].cpu().numpy(),
                          {n: recorded[n][0].cpu().numpy() for n in names})


def train(protocol: Protocol, *, checkpoint: str | Path | None = None, resume: bool = False,
          progress: bool = False) -> TrainingResult:
    """Train as ``protocol`` says; see the module docstring.

    Parameters
    ----------
    checkpoint : path, optional
        Checkpoint file (written every ``training.checkpoint_every`` epochs and at the end).
    resume : bool
        Continue from ``checkpoint`` if it exists.
    progress : bool
        Show a progress bar (epoch, loss, accuracy, level) on stderr.
    """
    trainer = Trainer(protocol)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    resumed_from = None
    if resume and checkpoint is not None and checkpoint.exists():
        trainer.load_checkpoint(checkpoint)
        resumed_from = trainer.next_epoch
    elif checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # a fresh start: an old run's checkpoint is stale
    training = protocol.training
    status, message = schema.STATUS_COMPLETE, trainer.finished or "epoch budget used"
    bar = tqdm(total=training.epochs, initial=trainer.next_epoch, desc=protocol.schema.name,
               unit="epoch", disable=not progress, leave=True)
    history = trainer.history
    try:
        while trainer.next_epoch < training.epochs and not trainer.finished:
            started = time.perf_counter()
            level = trainer.curriculum.level()
            every = training.alignment_every
            comparison = trainer.compare_with_bptt(level) \
                if every and trainer.next_epoch % every == 0 else None
            loss, grad_norm = trainer.train_epoch(level)
            eval_loss, accuracy = trainer.evaluate(level)
            history.append(loss, grad_norm, eval_loss, accuracy, trainer.curriculum.n,
                           time.perf_counter() - started, comparison)
            mean_accuracy = mean_of_active(accuracy)
            if trainer.curriculum.finished(accuracy) and training.stop_at_max_level:
                trainer.finished = f"last curriculum level (N = {trainer.curriculum.n}) passed"
            elif training.target_accuracy is not None and mean_accuracy >= \
                    training.target_accuracy:
                trainer.finished = f"target accuracy {training.target_accuracy} reached"
            trainer.curriculum.update(accuracy)
            trainer.next_epoch += 1
            bar.set_postfix(loss=f"{loss:.4g}", acc=f"{mean_accuracy:.3f}",
                            **({"N": trainer.curriculum.n} if trainer.curriculum.active else {}))
            bar.update(1)
            last = trainer.finished or trainer.next_epoch == training.epochs
            if checkpoint is not None and (trainer.next_epoch % training.checkpoint_every == 0
                                           or last):
                trainer.save_checkpoint(checkpoint)
        message = trainer.finished or message
    except _Diverged as diverged:
        status = schema.STATUS_DIVERGED
        message = f"training diverged: {diverged}"
        losses, norms = getattr(trainer, "partial", ([], []))
        history.append(float(np.mean(losses)) if losses else math.nan,
                       float(np.mean(norms)) if norms else math.nan, math.nan,
                       np.full(history.n_heads, np.nan), trainer.curriculum.n, math.nan)
    except KeyboardInterrupt:
        status = schema.STATUS_INTERRUPTED
        message = f"interrupted during epoch {trainer.next_epoch}"
    finally:
        bar.close()
    test = trainer.test_trials() if status != schema.STATUS_DIVERGED else None
    params = {k: v.detach()[0].cpu().numpy().astype(np.float64) for k, v in trainer.params.items()}
    info = {"epochs_completed": trainer.next_epoch, "resumed_from_epoch": resumed_from,
            "checkpoint": str(checkpoint) if checkpoint else None}
    return TrainingResult(protocol, params, trainer.history, status, message, test, info)
