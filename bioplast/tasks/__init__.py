"""Tasks: trials for training and testing (`Task`, `Batch`, `Level`) and their registry."""

from ..registry import TASKS
from .base import Batch, Level, Task, TaskConfig, stack_batches

__all__ = ["TASKS", "Batch", "Level", "Task", "TaskConfig", "stack_batches"]
