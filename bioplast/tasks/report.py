"""Tasks that integrate a stimulus and report after a delay (Haputhanthri, Storan, Jiang
et al. 2025, arXiv 2502.07256, name these tasks; their exact trial structure is not public,
so the definitions here are bioplast's own, documented below).

Common structure: input channel 0 carries the stimulus during ``stimulus``; then a
``delay`` with zero input; then a ``response`` window during which input channel 1 (go
cue) is 1 and the single output must equal the trial's answer. Loss: MSE on the response
window only (mask 0 elsewhere).

- ``delayed_addition``: two pulses at two different random steps of the stimulus period,
  amplitudes ~ U(-1, 1); answer = their sum. Accuracy: fraction of trials whose mean output
  over the response window is within ``tolerance`` of the answer.
- ``evidence_accumulation``: each stimulus step carries s * c + noise * N(0, 1), with
  s = +-1 and the coherence c drawn from ``coherences`` per trial; answer = s. Accuracy:
  fraction of trials whose mean response output has the sign of s.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import pydantic

from .base import Batch, Level, Seconds, Task, TaskConfig, to_steps


class _ReportConfig(TaskConfig):
    stimulus: Seconds = "50 ms"
    delay: Seconds = "50 ms"
    response: Seconds = "10 ms"


class _ReportAfterDelay(Task):
    loss = "mse"

    @property
    def n_inputs(self) -> int:
        return 2

    @property
    def n_outputs(self) -> int:
        return 1

    def max_steps(self, level: Level | None = None) -> int:
        return sum(self.periods().values())

    def periods(self) -> dict[str, int]:
        minimum = {"stimulus": 2, "delay": 0, "response": 1}
        return {name: to_steps(getattr(self.config, name), self.dt, name, least)
                for name, least in minimum.items()}

    @abstractmethod
    def stimulus(self, rng: np.random.Generator, batch_size: int, n_steps: int):
        """``(stream (trial, n_steps), answer (trial,), conditions)``."""

    def sample(self, batch_size: int, rng: np.random.Generator,
               level: Level | None = None) -> Batch:
        steps = self.periods()
        total = sum(steps.values())
        stream, answer, conditions = self.stimulus(rng, batch_size, steps["stimulus"])
        inputs = np.zeros((batch_size, total, 2))
        inputs[:, :steps["stimulus"], 0] = stream
        response = slice(total - steps["response"], total)
        inputs[:, response, 1] = 1.0
        targets = np.zeros((batch_size, total, 1))
        targets[:, response, 0] = answer[:, None]
        mask = np.zeros_like(targets)
        mask[:, response] = 1.0
        return Batch(inputs, targets, mask, {"answer": answer, **conditions})

    def response_mean(self, outputs: np.ndarray) -> np.ndarray:
        return outputs[:, -self.periods()["response"]:, 0].mean(axis=1)

    def describe_timing(self):
        return {name: {"seconds": getattr(self.config, name), "steps": n}
                for name, n in self.periods().items()}


class DelayedAdditionConfig(_ReportConfig):
    tolerance: float = pydantic.Field(0.1, gt=0)


class DelayedAddition(_ReportAfterDelay):
    name = "delayed_addition"
    Config = DelayedAdditionConfig
    description = "add two pulses' amplitudes, report the sum after a delay"

    def stimulus(self, rng, batch_size, n_steps):
        times = np.stack([rng.choice(n_steps, size=2, replace=False) for _ in range(batch_size)])
        amplitudes = rng.uniform(-1.0, 1.0, size=(batch_size, 2))
        stream = np.zeros((batch_size, n_steps))
        stream[np.arange(batch_size)[:, None], times] = amplitudes
        return stream, amplitudes.sum(axis=1), {"first": amplitudes[:, 0],
                                                "second": amplitudes[:, 1]}

    def score(self, outputs, batch, level=None):
        error = np.abs(self.response_mean(outputs) - batch.conditions["answer"])
        return np.array([float(np.mean(error < self.config.tolerance))])


class EvidenceAccumulationConfig(_ReportConfig):
    stimulus: Seconds = "100 ms"
    delay: Seconds = "0 ms"
    coherences: list[float] = pydantic.Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4],
                                             min_length=1)
    noise: float = pydantic.Field(1.0, ge=0)


class EvidenceAccumulation(_ReportAfterDelay):
    name = "evidence_accumulation"
    Config = EvidenceAccumulationConfig
    description = "report the sign of the mean of a noisy stream"

    def stimulus(self, rng, batch_size, n_steps):
        sign = np.where(rng.uniform(size=batch_size) < 0.5, -1.0, 1.0)
        coherence = rng.choice(np.asarray(self.config.coherences), size=batch_size)
        stream = (sign * coherence)[:, None] + self.config.noise * rng.normal(
            size=(batch_size, n_steps))
        return stream, sign, {"coherence": coherence}

    def score(self, outputs, batch, level=None):
        agree = np.sign(self.response_mean(outputs)) == batch.conditions["answer"]
        return np.array([float(np.mean(agree))])
