"""Backpropagation through time: autograd through the unrolled torch step.

The exact gradient of the task loss plus regularizer penalties; optional truncation (states
detached every ``truncation`` steps). The shared update applies it with a ``torch.optim``
optimizer (SGD with momentum / Nesterov, Adam), gradient-norm clipping, and projects the
parameters onto their constraints (bounds such as tau >= 1 step, no autapses, Dale's law).
"""

from __future__ import annotations

import pydantic

from .base import LearningRule, RuleConfig, true_gradient


class BPTTConfig(RuleConfig):
    truncation: int | None = pydantic.Field(None, ge=1, description="steps between detaches")


class BPTT(LearningRule):
    """Backpropagation through time with a torch.optim optimizer."""

    name = "bptt"
    Config = BPTTConfig
    description = "backpropagation through time (exact gradient, optional truncation)"

    @property
    def exact(self) -> bool:
        return self.config.truncation is None

    def estimate(self, context, params, batch, initial_state, level, state):
        loss, gradients = true_gradient(context, params, batch, initial_state, level,
                                        truncation=self.config.truncation)
        return gradients, loss
