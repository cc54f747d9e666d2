"""The LearningRule interface: one update of a network's parameters from one batch.

Every rule estimates the loss gradient of the parameters it trains (`LearningRule.estimate`:
exact for BPTT, eligibility traces for e-prop, perturbations for node perturbation); the
shared `LearningRule.update` hands the estimate to a `MemberOptimizer` (SGD or Adam as in
``torch.optim``, one per member, with optional gradient-norm clipping) and projects the
parameters onto their constraints. Parameters are torch tensors with a leading member axis
(independent networks); losses and gradient norms are reported per member. ``context``
holds the model, task, compiled torch step, noise generator(s) and regularizers of the
run. A member whose gradient is not finite is left unchanged and reported, so the training
loop can stop it with its last good parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Mapping

import numpy as np
import pydantic
import torch

from ..compile_torch import TorchStepper, draw_steps, readout
from ..model import Model
from ..optimizers import MemberOptimizer
from ..tasks import Batch, Level, Task


#: the fields each schedule kind reads (``kind`` besides)
SCHEDULE_FIELDS = {"plateau": ("factor", "patience", "threshold", "min_lr"),
                   "step": ("step_size", "gamma"),
                   "cosine": ("T_max", "eta_min")}


class ScheduleConfig(pydantic.BaseModel):
    """A learning-rate schedule as ``torch.optim.lr_scheduler`` computes it, stepped once
    per epoch (after the epoch's updates, so the first epoch uses ``optimizer.lr``):
    ``plateau`` (ReduceLROnPlateau, mode min, threshold_mode rel, cooldown 0, eps 1e-8) on
    the epoch's mean training loss, ``step`` (StepLR), ``cosine`` (CosineAnnealingLR).
    Each network of an ensemble has its own schedule state and learning rate."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)
    kind: Literal["plateau", "step", "cosine"] = pydantic.Field(
        description="plateau: lr x factor after more than patience epochs without a "
                    "relative improvement of the epoch's mean training loss by threshold; "
                    "step: lr x gamma every step_size epochs; cosine: from lr to eta_min "
                    "along half a cosine over T_max epochs")
    factor: float = pydantic.Field(0.1, gt=0, lt=1, description="plateau: lr multiplier")
    patience: int = pydantic.Field(10, ge=0, description="plateau: epochs without "
                                                         "improvement before a reduction")
    threshold: float = pydantic.Field(1e-4, ge=0, lt=1, description="plateau: relative "
                                      "improvement that counts (loss < best (1 - threshold))")
    min_lr: float = pydantic.Field(0.0, ge=0, description="plateau: lowest lr")
    step_size: int | None = pydantic.Field(None, ge=1, description="step: epochs between "
                                                                   "reductions (required)")
    gamma: float = pydantic.Field(0.1, gt=0, description="step: lr multiplier")
    T_max: int | None = pydantic.Field(None, ge=1, description="cosine: epochs from lr to "
                                                               "eta_min (required)")
    eta_min: float = pydantic.Field(0.0, ge=0, description="cosine: lowest lr")

    @pydantic.model_validator(mode="after")
    def _fields_of_the_kind(self):
        for name in sorted(self.model_fields_set - {"kind"}):
            if name not in SCHEDULE_FIELDS[self.kind]:
                owner = next(k for k, names in SCHEDULE_FIELDS.items() if name in names)
                raise ValueError(f"{name} applies to kind: {owner}")
        for name in ("step_size", "T_max"):
            if name in SCHEDULE_FIELDS[self.kind] and getattr(self, name) is None:
                raise ValueError(f"kind: {self.kind} needs {name}")
        return self


class OptimizerConfig(pydantic.BaseModel):
    """A ``torch.optim`` optimizer: SGD (with momentum / Nesterov) or Adam, with an
    optional learning-rate schedule."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)
    name: Literal["sgd", "adam"] = "adam"
    lr: float = pydantic.Field(1e-3, gt=0, description="learning rate")
    momentum: float = pydantic.Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = pydantic.Field(0.0, ge=0)
    betas: list[Annotated[float, pydantic.Field(ge=0, lt=1)]] = pydantic.Field(
        default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2)
    schedule: ScheduleConfig | None = pydantic.Field(
        None, description="learning-rate schedule, stepped per epoch (null: constant lr)")

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and a momentum > 0")
        if self.name == "adam" and self.momentum:
            raise ValueError("momentum applies to sgd; adam has betas")
        return self


class RuleConfig(pydantic.BaseModel):
    """Base of every rule's configuration (the ``rule:`` block of a protocol)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)
    optimizer: OptimizerConfig = OptimizerConfig()
    grad_clip: float | None = pydantic.Field(None, gt=0, description="max gradient norm")


@dataclass
class TrainingContext:
    """What every update needs besides parameters and data."""

    model: Model
    task: Task
    stepper: TorchStepper
    generator: Any  # a torch.Generator, or one per member (a list)
    regularizers: list = field(default_factory=list)
    backend: Any = None  # a Backend for rules that only need forward passes; None: torch
    #: set True to keep the outputs ``(member, trial, time, output)`` of the first
    #: unperturbed forward pass in ``outputs`` (scoring on the training batch)
    keep_outputs: bool = False
    outputs: Any = None

    @property
    def dtype(self) -> torch.dtype:
        return self.stepper.dtype

    @property
    def device(self) -> torch.device:
        return self.stepper.device

    def tensor(self, array) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def initial_tensors(self, initial_state: Mapping[str, Any], n_members: int):
        """Initial states ``(trial, unit)`` (shared) or ``(member, trial, unit)`` as tensors
        ``(member, trial, unit)``."""
        tensors = {name: self.tensor(value) for name, value in initial_state.items()}
        return {name: value if value.dim() == 3 else value.expand(n_members, *value.shape)
                for name, value in tensors.items()}

    def randn(self, shape) -> torch.Tensor:
        """Standard normal numbers ``(member, ...)`` from the run's generator(s)."""
        return draw_steps(torch.randn, 1, shape, self.generator, self.dtype, self.device)[0]

    def recorded_variables(self) -> list[str]:
        """What the regularizers need recorded, besides the readout source."""
        return list(dict.fromkeys(name for regularizer in self.regularizers
                                  for name in regularizer.variables(self.model)))


def forward(context: TrainingContext, params: Mapping[str, torch.Tensor], batch: Batch,
            initial_state: Mapping[str, Any], record=(), truncation: int | None = None,
            detach_recurrent: bool = False, perturbations=None, scored_only: bool = False):
    """Run ``batch`` through the network: ``(outputs (member, trial, time, output),
    recorded)`` with gradients flowing to ``params``. With ``scored_only`` the readout is
    evaluated only at the steps the batch's mask weighs (the others are 0): losses and
    scores use no other step (`bioplast.tasks.Task.score`)."""
    model = context.model
    n_members = next(iter(params.values())).shape[0]
    state = context.initial_tensors(initial_state, n_members)
    names = list(dict.fromkeys([*record, model.readout.source]))
    recorded, _ = context.stepper.run(context.stepper.bind(params), context.tensor(batch.inputs),
                                      state, names, context.generator, truncation=truncation,
                                      detach_recurrent=detach_recurrent,
                                      perturbations=perturbations)
    source = recorded[model.readout.source]
    scored = np.flatnonzero(np.asarray(batch.mask).reshape(-1, *batch.mask.shape[-2:])
                            .any(axis=(0, 2))) if scored_only else None
    if scored is None or len(scored) == source.shape[2]:
        outputs = readout(model, source, params)
    else:
        steps = torch.as_tensor(scored, device=source.device)
        part = readout(model, source.index_select(2, steps), params)
        outputs = part.new_zeros(*source.shape[:2], source.shape[2], part.shape[-1]) \
            .index_copy(2, steps, part)
    if context.keep_outputs and context.outputs is None and not perturbations:
        context.outputs = outputs.detach()
    return outputs, recorded


def values_at_step_start(context: TrainingContext, params, name: str, recorded,
                         initial_state) -> torch.Tensor:
    """The values of variable ``name`` that step t starts from, ``(member, trial, time,
    unit)``: the recorded values (end of step t-1), and at t = 0 the value of the initial
    state."""
    n_members = recorded[name].shape[0]
    initial = context.initial_tensors(initial_state, n_members)
    env = {**context.stepper.bind(params), **initial, "t": 0.0, "dt": context.model.dt}
    first = context.stepper.value(name, env, None)
    return torch.cat([first[:, :, None], recorded[name][:, :, :-1]], dim=2)


def member_losses(context: TrainingContext, params, batch: Batch, initial_state, level: Level,
                  outputs, recorded) -> torch.Tensor:
    """`objective` of each member, ``(member,)`` (differentiable)."""
    return objective(context, params, batch, initial_state, level, outputs, recorded,
                     per_trial=True).mean(dim=-1)


def objective(context: TrainingContext, params, batch: Batch, initial_state, level: Level,
              outputs, recorded, per_trial: bool = False):
    """Task loss plus every regularizer's penalty (summed over members; per trial
    ``(member, trial)`` with ``per_trial``)."""
    model, task = context.model, context.task
    loss = task.loss_value(outputs, context.tensor(batch.targets), context.tensor(batch.mask),
                           level, per_trial=per_trial)
    initial = context.initial_tensors(initial_state, outputs.shape[0])
    for regularizer in context.regularizers:
        penalty = regularizer.trajectory_penalty(model, recorded, initial, per_trial)
        parameter_part = regularizer.param_penalty(model, params)
        if per_trial:
            loss = loss + penalty + (parameter_part[:, None] if torch.is_tensor(parameter_part)
                                     else parameter_part)
        else:
            loss = loss + torch.as_tensor(penalty).sum() + torch.as_tensor(parameter_part).sum()
    return loss


def true_gradient(context: TrainingContext, params, batch: Batch, initial_state, level: Level,
                  truncation: int | None = None, detach_recurrent: bool = False):
    """``(loss per member (member,), {name: d loss / d param})`` by autograd through the
    unrolled network (BPTT), for every trainable parameter."""
    trainable = {name: value.detach().clone().requires_grad_(True)
                 for name, value in params.items()
                 if context.model.params[name].trainable}
    current = {**params, **trainable}
    with torch.enable_grad():
        outputs, recorded = forward(context, current, batch, initial_state,
                                    record=context.recorded_variables(), truncation=truncation,
                                    detach_recurrent=detach_recurrent, scored_only=True)
        loss = member_losses(context, current, batch, initial_state, level, outputs, recorded)
        gradients = torch.autograd.grad(loss.sum(), list(trainable.values()),
                                        allow_unused=True)
    return loss.detach(), {name: (g if g is not None else torch.zeros_like(trainable[name]))
                           for name, g in zip(trainable, gradients)}


def parameter_penalty(context: TrainingContext, params, trained):
    """``(penalty per member (member,) or 0, its exact gradient per trained parameter)``
    of the regularizers' parameter parts (e.g. weight L2), for rules that do not
    backpropagate."""
    if not context.regularizers:
        return 0.0, {}
    with torch.enable_grad():
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in trained.items()}
        penalty = sum(torch.as_tensor(r.param_penalty(context.model, {**params, **leaves}))
                      for r in context.regularizers)
        if not penalty.requires_grad:
            return penalty, {}
        grads = torch.autograd.grad(penalty.sum(), list(leaves.values()), allow_unused=True)
    return penalty.detach(), {k: g for k, g in zip(leaves, grads) if g is not None}


class LearningRule(ABC):
    """Estimates gradients and applies them. Constructors store the config only.

    Subclasses set `name`, `Config`, `requires` (the backend capabilities it needs,
    `bioplast.backends.spec.CAPABILITIES`: checked when a protocol is loaded) and implement
    `estimate`.
    """

    name: ClassVar[str]
    Config: ClassVar[type[RuleConfig]]
    requires: ClassVar[frozenset[str]] = frozenset({"differentiable"})
    description: ClassVar[str] = ""

    def __init__(self, config: RuleConfig):
        self.config = config

    @property
    def exact(self) -> bool:
        """Whether `estimate` is the exact loss gradient (then comparing it with BPTT's is
        skipped: the alignment is 1 by construction)."""
        return False

    def check(self, model: Model) -> tuple[str, str] | None:
        """``(config key, message)`` if the config does not fit ``model``, else None."""
        return None

    def trainable(self, context: TrainingContext, params) -> dict[str, torch.Tensor]:
        return {name: params[name] for name, spec in context.model.params.items()
                if spec.trainable}

    def init_state(self, context: TrainingContext, params: dict[str, torch.Tensor]) -> dict:
        """The rule's own state for a fresh run: tensors with a leading member axis (e.g.
        random feedback weights), drawn from the context's generator(s)."""
        return {}

    def optimizer(self, context: TrainingContext, params) -> MemberOptimizer:
        """This rule's optimizer and clipping for every member of ``params``."""
        n_members = next(iter(params.values())).shape[0]
        return MemberOptimizer([self.config.optimizer] * n_members,
                               [self.config.grad_clip] * n_members,
                               self.trainable(context, params))

    @abstractmethod
    def estimate(self, context: TrainingContext, params, batch: Batch, initial_state,
                 level: Level, state: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``(gradient estimate per trained parameter, loss per member (member,))``."""

    def update(self, context: TrainingContext, params: dict[str, torch.Tensor], batch: Batch,
               initial_state: Mapping[str, Any], level: Level, state: dict,
               optimizer: MemberOptimizer) -> tuple[torch.Tensor, torch.Tensor]:
        """One update of ``params`` in place: ``(loss, gradient norm)`` per member."""
        with torch.no_grad():
            gradients, loss = self.estimate(context, params, batch, initial_state, level, state)
            norm = self.apply(context, params, gradients, optimizer)
        return loss, norm

    def apply(self, context: TrainingContext, params, gradients, optimizer) -> torch.Tensor:
        """Clip and apply ``gradients`` with the optimizer, then project the parameters.
        Returns the gradient norm per member before clipping (members with a non-finite
        norm are left unchanged)."""
        n_members = next(iter(params.values())).shape[0]
        if not gradients:
            return torch.zeros(n_members, dtype=torch.float64)
        norms = optimizer.step(self.trainable(context, params), gradients)
        for name, spec in context.model.params.items():
            if spec.trainable:
                params[name].copy_(context.model.constrain(params[name], name))
        return norms

    def state_dict(self, state: dict) -> dict:
        """``state`` as tensors and plain values (for ``torch.save`` / weights_only)."""
        return dict(state)

    def load_state_dict(self, state: dict, saved: dict) -> None:
        """Restore what `state_dict` saved into a fresh ``state``."""
        for name, value in state.items():
            value.copy_(saved[name])

