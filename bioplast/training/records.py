"""What a training run records and returns: each network's `History` (per-epoch records,
curriculum passes and parameter snapshots; its part of a checkpoint), its `TestTrials`,
and the run's `TrainingResult` (one `MemberResult` per network); `mean_of_active`, the
accuracy that stopping rules and progress report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..protocol import Protocol
from ..tasks import Batch


@dataclass
class History:
    """Per-epoch records: training loss (mean over the epoch's updates), gradient norm,
    test loss, accuracy and reliability per head (NaN for inactive heads; reliability also
    for tasks without classes: `bioplast.tasks.Task.reliability`), curriculum level N (-1
    without a curriculum), wall time in seconds and the learning rate of the epoch's
    updates."""

    n_heads: int
    parameters: list[str] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    accuracy: list[np.ndarray] = field(default_factory=list)
    reliability: list[np.ndarray] = field(default_factory=list)
    level: list[int] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    alignment: list[np.ndarray] = field(default_factory=list)
    update_norm: list[np.ndarray] = field(default_factory=list)
    gradient_norm: list[np.ndarray] = field(default_factory=list)
    #: curriculum N -> (epoch it was passed in, parameters then), with ``record.levels``
    passed: dict[int, tuple[int, dict[str, np.ndarray]]] = field(default_factory=dict)
    #: epoch -> parameters after it, with ``record.snapshots_every``
    snapshots: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    SCALARS = ("loss", "grad_norm", "eval_loss", "wall_time", "lr")
    PER_HEAD = ("accuracy", "reliability")
    PER_PARAMETER = ("alignment", "update_norm", "gradient_norm")

    def __len__(self) -> int:
        return len(self.loss)

    def append(self, loss: float, grad_norm: float, eval_loss: float, accuracy: np.ndarray,
               reliability: np.ndarray, level: int | None, wall_time: float, lr: float,
               comparison: dict[str, np.ndarray] | None = None) -> None:
        """One epoch; ``accuracy`` and ``reliability`` are ``(n_heads,)``; ``lr`` is the
        learning rate its updates used (before the schedule's step); ``comparison`` holds
        ``alignment``, ``update_norm`` and ``gradient_norm`` per parameter when the rule was
        compared with BPTT."""
        missing = np.full(len(self.parameters), np.nan)
        for name in self.PER_PARAMETER:
            getattr(self, name).append((comparison or {}).get(name, missing))
        self.loss.append(loss)
        self.grad_norm.append(grad_norm)
        self.eval_loss.append(eval_loss)
        self.accuracy.append(accuracy)
        self.reliability.append(reliability)
        self.level.append(-1 if level is None else level)
        self.wall_time.append(wall_time)
        self.lr.append(lr)

    def accuracy_array(self) -> np.ndarray:
        """``(epoch, head)`` accuracy."""
        return self.per_head("accuracy")

    def per_head(self, name: str) -> np.ndarray:
        """``(epoch, head)`` array of ``accuracy`` or ``reliability``."""
        return np.array(getattr(self, name)).reshape(len(self), self.n_heads)

    def per_parameter(self, name: str) -> np.ndarray:
        """``(epoch, parameter)`` array of ``alignment``, ``update_norm`` or
        ``gradient_norm`` (NaN in epochs without a comparison)."""
        return np.array(getattr(self, name)).reshape(len(self), len(self.parameters))

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {name: torch.tensor(getattr(self, name), dtype=torch.float64)
                 for name in self.SCALARS}
        for name in self.PER_HEAD:
            state[name] = torch.as_tensor(self.per_head(name), dtype=torch.float64)
        state["level"] = torch.tensor(self.level, dtype=torch.int64)
        for name in self.PER_PARAMETER:
            state[name] = torch.as_tensor(self.per_parameter(name), dtype=torch.float64)
        state["passed"] = {str(n): {"epoch": epoch, "params": _tensors(params)}
                           for n, (epoch, params) in self.passed.items()}
        state["snapshots"] = {str(epoch): _tensors(params)
                              for epoch, params in self.snapshots.items()}
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.SCALARS:
            setattr(self, name, state[name].tolist())
        for name in self.PER_HEAD:
            setattr(self, name, list(state[name].numpy()))
        self.level = state["level"].tolist()
        for name in self.PER_PARAMETER:
            setattr(self, name, list(state[name].numpy()))
        self.passed = {int(n): (int(saved["epoch"]), _arrays(saved["params"]))
                       for n, saved in state.get("passed", {}).items()}
        self.snapshots = {int(epoch): _arrays(params)
                          for epoch, params in state.get("snapshots", {}).items()}


def _tensors(params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in params.items()}


def _arrays(params: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in params.items()}


@dataclass
class TestTrials:
    """Recorded test trials of one network at the end of training."""

    batch: Batch
    initial_state: dict[str, np.ndarray]
    outputs: np.ndarray
    recorded: dict[str, np.ndarray]


@dataclass
class MemberResult:
    """What one network of a run ended with."""

    protocol: Protocol
    params: dict[str, np.ndarray]
    history: History
    status: str
    message: str
    test: TestTrials | None
    epochs_completed: int


@dataclass
class TrainingResult:
    """The networks of a run (one, or the members of an ensemble) and how the run ended.

    ``member_coords`` names what varies between members (e.g. ``{"seed": [0, 1]}``); a
    single network's fields are also reachable as ``result.params``, ``.history``, ...
    """

    members: list[MemberResult]
    status: str
    message: str
    info: dict[str, Any]
    member_coords: dict[str, list] = field(default_factory=dict)

    @property
    def protocol(self) -> Protocol:
        return self.members[0].protocol

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.members[0].params

    @property
    def history(self) -> History:
        return self.members[0].history

    @property
    def test(self) -> TestTrials | None:
        return self.members[0].test


def mean_of_active(accuracy: np.ndarray) -> float:
    """Mean accuracy over the active heads (the non-NaN entries)."""
    active = accuracy[~np.isnan(accuracy)]
    return float(active.mean()) if active.size else math.nan
