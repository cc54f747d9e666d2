"""K-bit flip-flop (Sussillo & Barak 2013; as used by Haputhanthri, Storan, Jiang et al.
2025, arXiv 2502.07256: K = 3, flip probability 0.05 per step, T = 100 steps).

Each input channel k gets, at every step independently with probability
``flip_probability``, a pulse of +1 or -1 (equally likely), otherwise 0. Target channel k
holds the value of the last pulse on channel k (0 before the first). Loss: MSE over all
steps and channels. Accuracy: fraction of (trial, step, bit) whose output is within 0.5 of
the target (so it rounds to the held value, or to 0 before the first pulse).
"""

from __future__ import annotations

import numpy as np
import pydantic

from .base import Batch, Level, Seconds, Task, TaskConfig, to_steps


class FlipFlopConfig(TaskConfig):
    n_bits: int = pydantic.Field(3, ge=1)
    duration: Seconds = "100 ms"
    flip_probability: float = pydantic.Field(0.05, gt=0, le=1,
                                             description="pulse probability per step and bit")


class FlipFlop(Task):
    name = "flip_flop"
    loss = "mse"
    Config = FlipFlopConfig
    description = "K bits: each output holds its last input pulse (+1 or -1)"

    @property
    def n_inputs(self) -> int:
        return self.config.n_bits

    @property
    def n_outputs(self) -> int:
        return self.config.n_bits

    def max_steps(self, level: Level | None = None) -> int:
        return to_steps(self.config.duration, self.dt, "duration", 1)

    def sample(self, batch_size: int, rng: np.random.Generator,
               level: Level | None = None) -> Batch:
        n_steps = self.max_steps(level)
        shape = (batch_size, n_steps, self.config.n_bits)
        pulses = rng.uniform(size=shape) < self.config.flip_probability
        signs = np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
        inputs = pulses * signs
        # the last pulse so far: carry the index of the latest pulse forward in time
        index = np.where(pulses, np.arange(n_steps)[None, :, None], -1)
        last = np.maximum.accumulate(index, axis=1)
        held = np.take_along_axis(inputs, np.maximum(last, 0), axis=1)
        targets = np.where(last >= 0, held, 0.0)
        return Batch(inputs, targets, np.ones(shape), {})

    def score(self, outputs: np.ndarray, batch: Batch, level: Level | None = None) -> np.ndarray:
        return np.array([float(np.mean(np.abs(outputs - batch.targets) < 0.5))])

    def describe_timing(self):
        return {"duration": {"seconds": self.config.duration,
                             "steps": to_steps(self.config.duration, self.dt, "duration", 1)}}
