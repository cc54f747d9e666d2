"""Regularizers: differentiable penalties added to every learning rule's objective.

A regularizer has a trajectory part, written as a sum over steps of a term that depends on
the values at step t and t-1 (`step_penalty`), and/or a parameter part (`param_penalty`).
Rules use them the way their own credit assignment allows (docs/architecture.md section 5.4): BPTT adds the
whole penalty to the loss; e-prop adds the immediate partial derivative of the step term
w.r.t. the current values as an extra learning signal; node perturbation adds the penalty
of each trial to that trial's error. Members add up, each normalized like the task loss.

Trajectory values are dicts of tensors ``(member, trial, [time,] unit)`` keyed by the
model's variable names (states and coupling targets).
"""

from __future__ import annotations

from abc import ABC
from typing import ClassVar, Mapping

import pydantic
import torch

from .registry import REGULARIZERS  # noqa: F401  (re-exported; its entries are in registry.py)


class RegularizerConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True,
                                       allow_inf_nan=False)
    weight: float = pydantic.Field(description="lambda: the penalty's factor", ge=0)


class Regularizer(ABC):
    """A penalty. ``variables(model)`` names the recorded values its step term needs."""

    name: ClassVar[str]
    Config: ClassVar[type[RegularizerConfig]]
    description: ClassVar[str] = ""

    def __init__(self, config: RegularizerConfig):
        self.config = config

    def variables(self, model) -> list[str]:
        return []

    def check(self, model) -> tuple[str, str] | None:
        """``(config key, message)`` if the config does not fit ``model``, else None."""
        return None

    def step_penalty(self, model, previous: Mapping[str, torch.Tensor],
                     current: Mapping[str, torch.Tensor], n_steps: int,
                     per_trial: bool = False):
        """The penalty term of one step, per member ``(member,)`` (``(member, trial)`` with
        ``per_trial``, whose mean over trials is the member's term). ``current`` holds the
        values at step t ``(member, trial, unit)``, ``previous`` those at step t-1 (at t = 0
        only the states, as their initial values); ``n_steps`` is the trial length."""
        return 0.0

    def param_penalty(self, model, params: Mapping[str, torch.Tensor]):
        """The parameter part, per member ``(member,)`` (params have a member axis)."""
        return 0.0

    def trajectory_penalty(self, model, trajectory: Mapping[str, torch.Tensor],
                           initial_state: Mapping[str, torch.Tensor], per_trial=False):
        """``sum_t step_penalty`` over a trajectory ``(member, trial, time, unit)``."""
        names = self.variables(model)
        if not names:
            return 0.0
        n_steps = trajectory[names[0]].shape[2]
        previous = {name: initial_state[name] for name in names if name in initial_state}
        # unbind, not trajectory[:, :, step]: each indexing's backward fills a zero tensor
        # of the whole trajectory (O(T^2); measured 9x slower BPTT at 100 steps)
        by_step = {name: trajectory[name].unbind(2) for name in names}
        total = 0.0
        for step in range(n_steps):
            current = {name: by_step[name][step] for name in names}
            total = total + self.step_penalty(model, previous, current, n_steps, per_trial)
            previous = current
        return total


def _total_current(model, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The total input current of each unit: the sum of its coupling targets."""
    return sum(values[coupling.target] for coupling in model.couplings.values())


class TemporalConsistencyConfig(RegularizerConfig):
    fraction: float = pydantic.Field(0.5, gt=0, le=1, description="share of units penalized")


class TemporalConsistency(Regularizer):
    """Temporal-consistency regularization (TCR), as in the public code implementing
    Haputhanthri et al. 2025: ``R = 1/(T B n) sum_t sum_b sum_{i<n} [(h_t,i - h_{t-1},i)^2 +
    1[t>0] (z_t,i - z_{t-1},i)^2]`` over the first ``n = round(fraction * N)`` units, with
    ``h`` the state (h_{-1}: the initial state) and ``z`` the total input current (the sum
    of the coupling targets)."""

    name = "temporal_consistency"
    Config = TemporalConsistencyConfig
    description = "penalize change of states and input currents between steps (TCR)"

    def variables(self, model):
        return [*model.state_names, *(c.target for c in model.couplings.values())]

    def step_penalty(self, model, previous, current, n_steps, per_trial=False):
        n = max(1, round(self.config.fraction * model.n_units))
        terms = sum(_sum_units(current[name] - previous[name], n, per_trial)
                    for name in model.state_names)
        targets = [c.target for c in model.couplings.values()]
        if targets and all(target in previous for target in targets):  # 1[t > 0]
            change = _total_current(model, current) - _total_current(model, previous)
            terms = terms + _sum_units(change, n, per_trial)
        trials = current[model.state_names[0]].shape[1]
        return terms * (self.config.weight / (n_steps * n * (1 if per_trial else trials)))


def _sum_units(difference: torch.Tensor, n: int, per_trial: bool):
    """Sum of squares of the first ``n`` units, over trials too unless ``per_trial``."""
    squared = difference[..., :n] ** 2
    return squared.sum(dim=-1) if per_trial else squared.sum(dim=(-2, -1))


class ActivityL2Config(RegularizerConfig):
    variables: list[str] | None = pydantic.Field(None, description="default: the states")


class ActivityL2(Regularizer):
    """``weight / (T B N) sum_t sum_b sum_i v_t,i^2`` for the chosen variables."""

    name = "activity_l2"
    Config = ActivityL2Config
    description = "penalize squared activity (mean over steps, trials and units)"

    def variables(self, model):
        return list(self.config.variables or model.state_names)

    def check(self, model):
        unknown = [name for name in self.variables(model) if name not in model.recordable]
        if unknown:
            return "variables", (f"{', '.join(map(repr, unknown))} not recorded variables of "
                                 f"model '{model.name}' (recordable: "
                                 f"{', '.join(model.recordable)})")
        return None

    def step_penalty(self, model, previous, current, n_steps, per_trial=False):
        total = 0.0
        for name in self.variables(model):
            value = current[name]
            trials = 1 if per_trial else value.shape[1]
            total = total + _sum_units(value, value.shape[-1], per_trial) / (
                n_steps * trials * value.shape[-1])
        return self.config.weight * total


class WeightL2Config(RegularizerConfig):
    params: list[str] | None = pydantic.Field(None, description="default: the couplings")


class WeightL2(Regularizer):
    """``weight * sum of squares`` of the chosen parameter arrays (default: couplings)."""

    name = "weight_l2"
    Config = WeightL2Config
    description = "penalize the sum of squared weights"

    def names(self, model) -> list[str]:
        return list(self.config.params or model.couplings)

    def check(self, model):
        wrong = [name for name in self.names(model)
                 if name not in model.params or not model.params[name].trainable]
        if wrong:
            trainable = [name for name, spec in model.params.items() if spec.trainable]
            return "params", (f"{', '.join(map(repr, wrong))} not trainable parameters of "
                              f"model '{model.name}' (trainable: {', '.join(trainable)})")
        return None

    def param_penalty(self, model, params):
        return self.config.weight * sum(
            (params[name] ** 2).reshape(params[name].shape[0], -1).sum(dim=1)
            for name in self.names(model))


class MemberWeighted(Regularizer):
    """A regularizer whose weight differs between the members of an ensemble: the
    penalty of ``regularizer`` at weight 1 times each member's weight ``weights
    (member,)``."""

    def __init__(self, regularizer: Regularizer, weights: torch.Tensor):
        super().__init__(regularizer.config)
        self.unit = type(regularizer)(regularizer.config.model_copy(update={"weight": 1.0}))
        self.name = regularizer.name
        self.weights = weights

    def _scaled(self, penalty):
        if not torch.is_tensor(penalty):
            return penalty * self.weights if penalty else penalty
        return penalty * self.weights.reshape(-1, *([1] * (penalty.dim() - 1)))

    def variables(self, model):
        return self.unit.variables(model)

    def step_penalty(self, model, previous, current, n_steps, per_trial=False):
        return self._scaled(self.unit.step_penalty(model, previous, current, n_steps,
                                                   per_trial))

    def param_penalty(self, model, params):
        return self._scaled(self.unit.param_penalty(model, params))

    def trajectory_penalty(self, model, trajectory, initial_state, per_trial=False):
        return self._scaled(self.unit.trajectory_penalty(model, trajectory, initial_state,
                                                         per_trial))

