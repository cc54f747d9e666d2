"""The LearningRule interface: one update of a network's parameters from one batch.

``update(context, params, batch, initial_state, level, state) -> (params, state, metrics)``
where ``params`` are torch tensors with a leading member axis, ``context`` holds the model,
task, compiled torch step and noise generator of the run, ``state`` is the rule's own state
(optimizer moments, traces...) and ``metrics`` a dict of floats (at least ``loss``). A rule
whose update has no finite loss leaves the parameters unchanged and reports the loss, so
the training loop can stop with the last good parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Mapping

import pydantic
import torch

from ..compile_torch import TorchStepper, readout
from ..model import Model
from ..registry import Registry
from ..tasks import Batch, Level, Task


class RuleConfig(pydantic.BaseModel):
    """Base of every rule's configuration (the ``rule:`` block of a protocol)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)


class OptimizerConfig(pydantic.BaseModel):
    """A ``torch.optim`` optimizer: SGD (with momentum / Nesterov) or Adam."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)
    name: Literal["sgd", "adam"] = "adam"
    lr: float = pydantic.Field(1e-3, gt=0, description="learning rate")
    momentum: float = pydantic.Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = pydantic.Field(0.0, ge=0)
    betas: list[Annotated[float, pydantic.Field(ge=0, lt=1)]] = pydantic.Field(
        default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and a momentum > 0")
        if self.name == "adam" and self.momentum:
            raise ValueError("momentum applies to sgd; adam has betas")
        return self


def build_optimizer(config: OptimizerConfig, parameters) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr, betas=tuple(config.betas),
                            weight_decay=config.weight_decay)


@dataclass
class TrainingContext:
    """What every update needs besides parameters and data."""

    model: Model
    task: Task
    stepper: TorchStepper
    generator: torch.Generator
    regularizers: list = field(default_factory=list)

    @property
    def dtype(self) -> torch.dtype:
        return self.stepper.dtype

    @property
    def device(self) -> torch.device:
        return self.stepper.device

    def tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)


def forward(context: TrainingContext, params: Mapping[str, torch.Tensor], batch: Batch,
            initial_state: Mapping[str, Any], record=(), truncation: int | None = None):
    """Run ``batch`` through the network: ``(outputs (member, trial, time, output),
    recorded)`` with gradients flowing to ``params``."""
    model = context.model
    n_members = next(iter(params.values())).shape[0]
    state = {name: context.tensor(value).expand(n_members, *value.shape[-2:])
             for name, value in initial_state.items()}
    names = list(dict.fromkeys([*record, model.readout.source]))
    recorded, _ = context.stepper.run(context.stepper.bind(params), context.tensor(batch.inputs),
                                      state, names, context.generator, truncation=truncation)
    return readout(model, recorded[model.readout.source], params), recorded


class LearningRule(ABC):
    """Updates parameters from batches. Constructors store the config only."""

    name: ClassVar[str]
    Config: ClassVar[type[RuleConfig]]
    needs_gradients: ClassVar[bool] = True

    def __init__(self, config: RuleConfig):
        self.config = config

    @abstractmethod
    def init_state(self, context: TrainingContext, params: Mapping[str, torch.Tensor]) -> dict:
        """The rule's state for a fresh run (e.g. an optimizer)."""

    @abstractmethod
    def update(self, context: TrainingContext, params: dict[str, torch.Tensor], batch: Batch,
               initial_state: Mapping[str, Any], level: Level, state: dict):
        """One update: ``(params, state, metrics)``."""

    @abstractmethod
    def state_dict(self, state: dict) -> dict:
        """``state`` as tensors and plain values (for ``torch.save`` / weights_only)."""

    @abstractmethod
    def load_state_dict(self, state: dict, saved: dict) -> None:
        """Restore what `state_dict` saved into a fresh ``state``."""


RULES = Registry("rule", "bioplast.rules")
RULES.register("bptt", "bioplast.rules.bptt:BPTT")
