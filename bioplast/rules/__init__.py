"""Learning rules (`LearningRule`) and their registry."""

from .base import RULES, LearningRule, OptimizerConfig, RuleConfig, TrainingContext, forward

__all__ = ["RULES", "LearningRule", "OptimizerConfig", "RuleConfig", "TrainingContext",
           "forward"]
