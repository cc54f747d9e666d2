"""Backpropagation through time: autograd through the unrolled torch step.

Optimizers from ``torch.optim`` (SGD with momentum / Nesterov, Adam), gradient-norm
clipping, optional truncation (states detached every ``truncation`` steps). Only
parameters marked trainable in the model change; after every step each parameter is
projected onto its constraints (bounds such as tau >= 1 step, no autapses, Dale's law).
"""

from __future__ import annotations

import math

import pydantic
import torch

from .base import (LearningRule, OptimizerConfig, RuleConfig, TrainingContext,
                   build_optimizer, forward)


class BPTTConfig(RuleConfig):
    optimizer: OptimizerConfig = OptimizerConfig()
    grad_clip: float | None = pydantic.Field(None, gt=0, description="max gradient norm")
    truncation: int | None = pydantic.Field(None, ge=1, description="steps between detaches")


def task_loss(context: TrainingContext, outputs, batch, level):
    return context.task.loss_value(outputs, context.tensor(batch.targets),
                                   context.tensor(batch.mask), level)


class BPTT(LearningRule):
    """Backpropagation through time with a torch.optim optimizer."""

    name = "bptt"
    Config = BPTTConfig

    def trainable(self, context: TrainingContext, params):
        return [params[name] for name, spec in context.model.params.items() if spec.trainable]

    def init_state(self, context, params):
        for name, spec in context.model.params.items():
            params[name].requires_grad_(spec.trainable)
        return {"optimizer": build_optimizer(self.config.optimizer,
                                             self.trainable(context, params))}

    def update(self, context, params, batch, initial_state, level, state):
        optimizer = state["optimizer"]
        optimizer.zero_grad(set_to_none=True)
        outputs, _ = forward(context, params, batch, initial_state,
                             truncation=self.config.truncation)
        loss = task_loss(context, outputs, batch, level)
        loss.backward()
        clip = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable(context, params), clip)
        metrics = {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}
        if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
            return params, state, metrics  # keep the last good parameters
        optimizer.step()
        with torch.no_grad():
            for name, spec in context.model.params.items():
                if spec.trainable:
                    params[name].copy_(context.model.constrain(params[name], name))
        return params, state, metrics

    def state_dict(self, state):
        return {"optimizer": state["optimizer"].state_dict()}

    def load_state_dict(self, state, saved):
        state["optimizer"].load_state_dict(saved["optimizer"])
