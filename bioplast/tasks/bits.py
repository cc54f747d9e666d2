"""N-parity and N-delayed-match-to-sample on binary sequences, with curricula.

Khajehabdollahi, Zeraati et al., ICLR 2024 (arXiv 2309.12927; code
LevinaLab/rnn_timescale_public, src/tasks/tasks.py): one input bit per step; a batch has
one sequence length M ~ randint(N_max + 2, 4 N_max + 2) (upper bound excluded), redrawn per
batch; the label is read at the last step only, 2-class cross-entropy per head.

- ``n_parity``: bits ~ Bernoulli(p), p ~ U(0, 1) per sequence; label of a head with memory
  N = (sum of the last N bits) mod 2.
- ``n_dms``: bits ~ Bernoulli(0.5); label = 1 if x[M-N] == x[M-1] (0-based), i.e. the bit
  N-1 steps before the last equals the last.

Accuracy and reliability (the softmax probability of the target class) per head at the last
step. `drive` gives long bit streams with these statistics (for timescales).

Curricula (`bioplast.curricula`): ``single_head`` trains head 0 on N, N+1, ...;
``multi_head`` keeps a head for every N from ``n`` up to the current one and adds the next;
``none`` trains a fixed N.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Literal

import numpy as np
import pydantic

from .base import (Batch, Level, Task, TaskConfig, classification_accuracy,
                   classification_reliability)


class BitTaskConfig(TaskConfig):
    n: int = pydantic.Field(2, ge=1, description="memory length N at the start")
    curriculum: Literal["single_head", "multi_head", "none"] = "multi_head"
    max_n: int = pydantic.Field(100, ge=1, description="largest N of the curriculum")
    threshold: float = pydantic.Field(0.98, gt=0, lt=1,
                                      description="accuracy (mean and newest head) must "
                                                  "exceed it to level up")

    @pydantic.model_validator(mode="after")
    def _max_n_not_below_n(self):
        if self.max_n < self.n:
            raise ValueError(f"max_n = {self.max_n} is below the starting n = {self.n}")
        return self


class _BitTask(Task):
    loss = "cross_entropy"
    Config = BitTaskConfig

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_heads(self) -> int:
        if self.config.curriculum == "multi_head":
            return self.config.max_n - self.config.n + 1
        return 1

    @property
    def n_outputs(self) -> int:
        return 2 * self.n_heads

    def level_at(self, n: int) -> Level:
        """The level whose largest memory length is ``n``."""
        first = self.config.n
        if self.config.curriculum == "multi_head":
            return Level(tuple((head, first + head) for head in range(n - first + 1)))
        return Level(((0, n),))

    def initial_level(self) -> Level:
        return self.level_at(self.config.n)

    def largest_level(self) -> Level:
        if self.config.curriculum == "none":
            return self.initial_level()
        return self.level_at(self.config.max_n)

    def max_steps(self, level: Level | None = None) -> int:
        return 4 * (level or self.initial_level()).n_max + 1  # lengths drawn below

    @abstractmethod
    def bits(self, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
        """Input bits, (trial, time) integers 0/1."""

    @abstractmethod
    def label(self, bits: np.ndarray, n: int) -> np.ndarray:
        """Class (0/1) of every trial for memory length ``n``."""

    def sample(self, batch_size: int, rng: np.random.Generator,
               level: Level | None = None) -> Batch:
        level = level or self.initial_level()
        n_max = level.n_max
        length = int(rng.integers(n_max + 2, 4 * n_max + 2))
        bits = self.bits(rng, batch_size, length)
        targets = np.zeros((batch_size, length, self.n_outputs))
        mask = np.zeros_like(targets)
        conditions = {}
        for head, n in level.heads:
            label = self.label(bits, n)
            channels = self.head_channels(head)
            targets[np.arange(batch_size), -1, channels.start + label] = 1.0
            mask[:, -1, channels] = 1.0
            conditions[f"label_head{head}"] = label
        return Batch(bits[..., None].astype(float), targets, mask, conditions)

    def score(self, outputs: np.ndarray, batch: Batch, level: Level | None = None) -> np.ndarray:
        return self._per_head(classification_accuracy, outputs, batch, level)

    def reliability(self, outputs: np.ndarray, batch: Batch,
                    level: Level | None = None) -> np.ndarray:
        return self._per_head(classification_reliability, outputs, batch, level)

    def _per_head(self, measure, outputs: np.ndarray, batch: Batch,
                  level: Level | None) -> np.ndarray:
        """``measure(outputs, batch, channels)`` of every active head, NaN for the others:
        ``(n_heads,)``."""
        values = np.full(self.n_heads, np.nan)
        for head, _ in (level or self.initial_level()).heads:
            values[head] = measure(outputs, batch, self.head_channels(head))
        return values

    def drive(self, rng: np.random.Generator, trials: int, steps: int,
              level: Level | None = None) -> np.ndarray:
        """The task's own `bits`, one sequence of ``steps`` per trial (N-parity: one p per
        trial, as the paper drives its networks for their timescales)."""
        return self.bits(rng, trials, steps)[..., None].astype(float)

    def describe_timing(self):
        return {"input": "one bit per step", "length": "M ~ randint(N_max+2, 4 N_max+2) steps",
                "response": "last step"}


class NParity(_BitTask):
    name = "n_parity"
    description = "parity of the last N bits (Khajehabdollahi et al. 2024)"

    def bits(self, rng, batch_size, length):
        p = rng.uniform(0.0, 1.0, size=(batch_size, 1))
        return (rng.uniform(size=(batch_size, length)) < p).astype(np.int64)

    def label(self, bits, n):
        return bits[:, -n:].sum(axis=1) % 2


class NDMS(_BitTask):
    name = "n_dms"
    description = "is the bit N-1 steps back equal to the last one (Khajehabdollahi et al. 2024)"

    def bits(self, rng, batch_size, length):
        return (rng.uniform(size=(batch_size, length)) < 0.5).astype(np.int64)

    def label(self, bits, n):
        return (bits[:, -n] == bits[:, -1]).astype(np.int64)
