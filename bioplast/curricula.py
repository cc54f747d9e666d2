"""Curricula: when a task's memory length N grows (Khajehabdollahi, Zeraati et al. 2024).

After every evaluation the curriculum levels up (N -> N + 1) when the mean accuracy of the
active heads and the accuracy of the newest head both exceed the task's ``threshold``
(0.98 in the paper), until ``max_n``. Tasks whose config has ``curriculum: single_head`` or
``multi_head`` (`bioplast.tasks.bits`) have one; other tasks stay at their one level.
"""

from __future__ import annotations

import math

import numpy as np

from .tasks import Level, Task


class Curriculum:
    """The current N of a task and the rule that raises it.

    Attributes
    ----------
    n : int or None
        Current memory length (``None`` for tasks without a curriculum).
    """

    def __init__(self, task: Task):
        self.task = task
        config = task.config
        self.active = getattr(config, "curriculum", "none") != "none"
        self.n = getattr(config, "n", None)  # fixed N for curriculum "none"

    @property
    def max_n(self) -> int | None:
        return getattr(self.task.config, "max_n", None) if self.active else self.n

    def level(self) -> Level:
        if self.n is None:
            return self.task.initial_level()
        return self.task.level_at(self.n)

    def passed(self, accuracy: np.ndarray) -> bool:
        """Whether ``accuracy`` (per head, NaN for inactive ones) meets the threshold."""
        heads = [head for head, _ in self.level().heads]
        values = accuracy[heads]
        threshold = getattr(self.task.config, "threshold", math.inf)
        newest = values[-1]
        return bool(np.nanmean(values) > threshold and newest > threshold)

    def update(self, accuracy: np.ndarray) -> bool:
        """Level up if the accuracy allows and N is below ``max_n``; True if it did."""
        if not self.active or self.n >= self.max_n or not self.passed(accuracy):
            return False
        self.n += 1
        return True

    def finished(self, accuracy: np.ndarray) -> bool:
        """The curriculum's last level is passed."""
        return self.active and self.n >= self.max_n and self.passed(accuracy)

    def state_dict(self) -> dict:
        return {"n": -1 if self.n is None else int(self.n)}

    def load_state_dict(self, state: dict) -> None:
        self.n = None if int(state["n"]) < 0 else int(state["n"])
