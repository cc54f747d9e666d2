"""The Task interface: trials as arrays, their loss, their score and reliability, and
long input streams with the trials' statistics (`Task.drive`).

A task turns a random generator (and, for curriculum tasks, a `Level`) into a `Batch` of
trials shaped ``(trial, time, channel)``: inputs, targets, a loss mask (weights), and
per-trial conditions. Randomness comes only from the ``numpy.random.Generator`` passed in.
Durations are given in seconds and converted to steps with the model's ``dt``.

Output channels are grouped in heads. Classification tasks (``loss = "cross_entropy"``)
have two channels per head, read as logits at the steps where the mask is non-zero;
regression tasks (``loss = "mse"``) have one or more channels in a single head.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import numpy as np
import pydantic
import torch
from scipy import special

from ..quantities import parse_quantity


class TaskConfig(pydantic.BaseModel):
    """Base of every task's configuration (the ``task:`` block of a protocol)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=True,
                                       strict=True, allow_inf_nan=False)


def _seconds(value) -> float:
    """A duration from a protocol (``"30 ms"``) in seconds; must not be negative."""
    import brian2
    duration = parse_quantity(value, brian2.second.dim)
    if duration < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return duration


#: A duration field of a task config: written as a quantity (``"30 ms"``), held in seconds.
Seconds = Annotated[float, pydantic.BeforeValidator(_seconds)]


class TimingError(ValueError):
    """A duration of a task config that does not fit the model's time step.

    ``field`` names the config field, so that protocols can point at it.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def to_steps(duration: float, dt: float, what: str, minimum: int = 0) -> int:
    """Number of steps of ``dt`` in ``duration`` (both seconds): a whole number, at least
    ``minimum``. Raises `TimingError` naming the field ``what``."""
    steps = duration / dt
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
        raise TimingError(what, f"{duration * 1e3:g} ms is not a whole number of steps of "
                                f"dt = {dt * 1e3:g} ms")
    if round(steps) < minimum:
        raise TimingError(what, f"{duration * 1e3:g} ms is {int(round(steps))} steps of "
                                f"dt = {dt * 1e3:g} ms; at least {minimum} needed")
    return int(round(steps))


@dataclass(frozen=True)
class Level:
    """What a curriculum asks of a task now: the memory length ``n`` of every active head,
    as ``(head index, n)`` pairs. Tasks without a curriculum have one head, ``n = None``."""

    heads: tuple[tuple[int, int | None], ...] = ((0, None),)

    @property
    def n_max(self) -> int | None:
        values = [n for _, n in self.heads if n is not None]
        return max(values) if values else None


@dataclass
class Batch:
    """A batch of trials.

    Attributes
    ----------
    inputs : array (trial, time, input)
    targets : array (trial, time, output)
        For classification heads, one-hot over the head's two channels.
    mask : array (trial, time, output)
        Loss weights; 0 where the output is free.
    conditions : dict of str to array (trial,)
        Per-trial labels (cue, parity label of each head, ...).
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    conditions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return self.inputs.shape[-3]

    @property
    def n_steps(self) -> int:
        return self.inputs.shape[-2]


def stack_batches(batches: list[Batch]) -> Batch:
    """The batches of several members as one Batch with a leading member axis:
    arrays ``(member, trial, time, channel)``, conditions ``(member, trial)``. All batches
    must have the same shape."""
    return Batch(np.stack([b.inputs for b in batches]), np.stack([b.targets for b in batches]),
                 np.stack([b.mask for b in batches]),
                 {key: np.stack([b.conditions[key] for b in batches])
                  for key in batches[0].conditions})


class Task(ABC):
    """A task: trials, loss and score.

    Subclasses set `name`, `loss` (``"cross_entropy"`` or ``"mse"``), `Config` (a
    `TaskConfig`), and implement `sample` and `score`. The constructor stores the
    config and the model's time step; sizes follow from them.
    """

    name: ClassVar[str]
    loss: ClassVar[str]
    Config: ClassVar[type[TaskConfig]]
    description: ClassVar[str] = ""

    def __init__(self, config: TaskConfig, dt: float):
        self.config = config
        self.dt = dt

    @property
    @abstractmethod
    def n_inputs(self) -> int:
        """Number of input channels."""

    @property
    @abstractmethod
    def n_outputs(self) -> int:
        """Number of output channels (all heads)."""

    @property
    def n_heads(self) -> int:
        return 1

    def head_channels(self, head: int) -> slice:
        """The output channels of one head."""
        if self.loss == "cross_entropy":
            return slice(2 * head, 2 * head + 2)
        return slice(0, self.n_outputs)

    def initial_level(self) -> Level:
        return Level()

    def largest_level(self) -> Level:
        """The level with the longest trials the task can reach (its curriculum's last)."""
        return self.initial_level()

    def max_steps(self, level: Level | None = None) -> int:
        """The longest trial at ``level`` (the initial one by default), in steps, known
        before any trial is drawn (so that batches are sized before they are allocated).
        Tasks override this; the default draws one trial."""
        return self.sample(1, np.random.default_rng(0), level).n_steps

    @abstractmethod
    def sample(self, batch_size: int, rng: np.random.Generator,
               level: Level | None = None) -> Batch:
        """Draw ``batch_size`` trials at ``level`` using only ``rng``."""

    @abstractmethod
    def score(self, outputs: np.ndarray, batch: Batch, level: Level | None = None) -> np.ndarray:
        """Accuracy in [0, 1] per head, shaped ``(n_heads,)``; NaN for inactive heads.

        ``outputs`` is ``(trial, time, output)``. A score uses only the steps that the
        batch's mask weighs (some output nonzero): training evaluates the readout at those
        steps only (tested for every registered task).
        """

    def reliability(self, outputs: np.ndarray, batch: Batch,
                    level: Level | None = None) -> np.ndarray:
        """Reliability in [0, 1] per head, shaped ``(n_heads,)``: the mean probability the
        outputs give the target class at the steps `score` uses (Kurtkaya et al.'s
        "reaction reliability"). NaN for inactive heads, and for every head of a task
        without classes (this default).

        ``outputs`` is ``(trial, time, output)``.
        """
        return np.full(self.n_heads, np.nan)

    def drive(self, rng: np.random.Generator, trials: int, steps: int,
              level: Level | None = None) -> np.ndarray:
        """Inputs ``(trial, time, input)`` of ``steps`` steps with the statistics of the
        task's trials at ``level``, to drive a trained network as in training (e.g. for its
        timescales). This default lays trials drawn with `sample` end to end in random
        order (so trials that `sample` draws in a fixed order, such as alternating cues,
        follow each other at random), cutting the last one at ``steps``."""
        per_row = -(-steps // self.max_steps(level))  # trials per row, at least
        pieces, filled = [], 0
        while filled < steps:
            inputs = self.sample(trials * per_row, rng, level).inputs
            shuffled = inputs[rng.permutation(trials * per_row)]
            pieces.append(shuffled.reshape(trials, per_row * inputs.shape[1], -1))
            filled += pieces[-1].shape[1]
        return np.concatenate(pieces, axis=1)[:, :steps]

    def loss_normalizer(self, mask: torch.Tensor, level: Level | None = None) -> list:
        """The constants a batch's loss is divided by (from its whole mask ``([member,]
        trial, time, output)``; per member with a member axis), so that the loss of a slice
        of steps, divided by them, adds up to the batch's loss."""
        if self.loss == "mse":
            return [float(math.prod(mask.shape[-3:]))]
        return [mask[..., channels].amax(dim=-1).sum(dim=(-2, -1))
                for channels in self._heads(level)]

    def _heads(self, level: Level | None) -> list[slice]:
        return [self.head_channels(head) for head, _ in (level or self.initial_level()).heads]

    def loss_value(self, outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                   level: Level | None = None, *, normalizer: list | None = None,
                   per_trial: bool = False) -> torch.Tensor:
        """The training loss, differentiable.

        ``outputs`` is ``([member,] trial, time, output)``; ``targets`` and ``mask`` are
        ``([member,] trial, time, output)`` (or slices of steps, with the ``normalizer`` of
        the whole batch). Members add up (each has its own loss, normalized by its own
        mask). With ``per_trial`` the result is ``([member,] trial)``, whose mean over
        trials is the loss.
        """
        if normalizer is None:
            normalizer = self.loss_normalizer(mask, level)
        if self.loss == "mse":
            return weighted_mse(outputs, targets, mask, normalizer[0], per_trial)
        return heads_cross_entropy(outputs, targets, mask, self._heads(level), normalizer,
                                   per_trial)

    def describe_timing(self) -> dict[str, Any]:
        """Durations of the trial periods in seconds and steps (for docs and results)."""
        return {}


def weighted_mse(outputs, targets, mask, count: float, per_trial: bool = False):
    """``sum(mask * (outputs - targets)^2) / count`` with ``count`` the number of elements
    of the whole batch: the weighted MSE averaged over all elements (Kurtkaya et al.)."""
    squared = mask * (outputs - targets) ** 2
    if per_trial:
        return squared.sum(dim=(-2, -1)) * (outputs.shape[-3] / count)
    return squared.sum() / count


def heads_cross_entropy(outputs, targets, mask, heads, totals, per_trial: bool = False):
    """Sum over heads of the 2-class cross-entropy at the masked steps, averaged over the
    batch's masked steps (``totals``: their weight per head; Khajehabdollahi et al.: loss =
    sum over active heads)."""
    total = 0.0
    for channels, weight_total in zip(heads, totals):
        logits, onehot = outputs[..., channels], targets[..., channels]
        weight = mask[..., channels].amax(dim=-1)
        weighted = weight * -(onehot * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
        weight_total = torch.clamp_min(torch.as_tensor(weight_total), 1e-12)
        if per_trial:  # ([member,] trial)
            total = total + weighted.sum(dim=-1) * (outputs.shape[-3] / weight_total[..., None])
        else:  # each member by its own total, then summed over members
            total = total + (weighted.sum(dim=(-2, -1)) / weight_total).sum()
    return total


def classification_accuracy(outputs: np.ndarray, batch: Batch, channels: slice) -> float:
    """Fraction of trials whose logits (at the masked steps of the head) pick the target
    class, every masked step counted."""
    weight = batch.mask[..., channels].max(axis=-1) > 0
    predicted = outputs[..., channels].argmax(axis=-1)
    target = batch.targets[..., channels].argmax(axis=-1)
    return float(np.mean((predicted == target)[weight])) if weight.any() else math.nan


def classification_reliability(outputs: np.ndarray, batch: Batch, channels: slice) -> float:
    """Mean over trials and the head's masked steps of the probability that the softmax of
    its logits gives the target class (the distribution its cross-entropy is taken on)."""
    weight = batch.mask[..., channels].max(axis=-1) > 0
    probability = special.softmax(outputs[..., channels], axis=-1)
    target = batch.targets[..., channels].argmax(axis=-1)
    given = np.take_along_axis(probability, target[..., None], axis=-1)[..., 0]
    return float(np.mean(given[weight])) if weight.any() else math.nan
