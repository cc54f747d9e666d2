"""Tasks: trials for training and testing (`Task`, `Batch`, `Level`) and their registry."""

from ..registry import Registry
from .base import Batch, Level, Task, TaskConfig, stack_batches

TASKS = Registry("task", "bioplast.tasks")
TASKS.register("n_parity", "bioplast.tasks.bits:NParity")
TASKS.register("n_dms", "bioplast.tasks.bits:NDMS")
TASKS.register("delayed_cue", "bioplast.tasks.delayed_cue:DelayedCue")
TASKS.register("flip_flop", "bioplast.tasks.flip_flop:FlipFlop")
TASKS.register("delayed_addition", "bioplast.tasks.report:DelayedAddition")
TASKS.register("evidence_accumulation", "bioplast.tasks.report:EvidenceAccumulation")

__all__ = ["TASKS", "Batch", "Level", "Task", "TaskConfig", "stack_batches"]
