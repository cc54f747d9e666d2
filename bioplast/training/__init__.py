"""Training runs: `train` trains a protocol's network, or an ensemble of them, epoch by
epoch, with checkpoints.

- `bioplast.training.loop`: the training loop (its docstring says how a run goes):
  `train`, `Trainer` (the state of a run and its updates), `Member`.
- `bioplast.training.records`: what a run records and returns: `History`, `TestTrials`,
  `MemberResult`, `TrainingResult`, `mean_of_active`.
- `bioplast.training.checkpoint`: checkpoint files: `checkpoint_path`, `read_checkpoint`,
  `checkpoint_is_complete`, and a trainer's state in one (`Checkpointing`).
"""

from .checkpoint import (CHECKPOINT_FORMAT, checkpoint_is_complete, checkpoint_path,
                         read_checkpoint)
from .loop import Member, Trainer, train
from .records import History, MemberResult, TestTrials, TrainingResult, mean_of_active

__all__ = ["CHECKPOINT_FORMAT", "History", "Member", "MemberResult", "TestTrials",
           "Trainer", "TrainingResult", "checkpoint_is_complete", "checkpoint_path",
           "mean_of_active", "read_checkpoint", "train"]
