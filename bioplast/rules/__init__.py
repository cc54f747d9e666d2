"""Learning rules (`LearningRule`) and their registry."""

from ..registry import RULES
from .base import (LearningRule, OptimizerConfig, RuleConfig, TrainingContext, forward,
                   objective, true_gradient)

__all__ = ["RULES", "LearningRule", "OptimizerConfig", "RuleConfig", "TrainingContext",
           "forward", "objective", "true_gradient"]
