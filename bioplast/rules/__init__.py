"""Learning rules (`LearningRule`) and their registry."""

from .base import (RULES, LearningRule, OptimizerConfig, RuleConfig, TrainingContext, forward,
                   objective, true_gradient)

__all__ = ["RULES", "LearningRule", "OptimizerConfig", "RuleConfig", "TrainingContext",
           "forward", "objective", "true_gradient"]
