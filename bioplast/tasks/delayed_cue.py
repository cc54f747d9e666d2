"""Delayed cue discrimination (Kurtkaya, Dinc et al., ICML 2025, arXiv 2502.17433; code
fatihdinc/dynamical-phases-stm, src/data.py and train_parallel.py).

Trial: a one-hot cue on input channel c (c = 0 or 1) for ``cue`` (30 ms), a zero-input
``delay``, a ``response`` window (50 ms) whose target is the cue's one-hot, then an optional
``post`` period with zero target. Loss: weighted MSE averaged over all elements, the last
``response + post`` steps weighted 1 - n/T and the others n/T (n = those steps, T = all
steps), as in the paper's code. Accuracy: fraction of response-window steps whose largest
output is the cue's channel (the paper's reaction accuracy). Reliability (the paper's
reaction reliability, src/rnn.py calculate_accuracy): the outputs divided by their sum over
channels (NaN -> 0), the cue's share averaged over trials and response steps. The paper's
batch is 64 copies of each cue (full batch, deterministic): trial k has cue k mod 2 unless
``random_cues``. The paper uses a sigmoid readout (set ``readout.activation: sigmoid`` on
the model).
"""

from __future__ import annotations

import numpy as np
import pydantic

from .base import Batch, Level, Seconds, Task, TaskConfig, to_steps


class DelayedCueConfig(TaskConfig):
    cue: Seconds = "30 ms"
    delay: Seconds = "100 ms"
    response: Seconds = "50 ms"
    post: Seconds = "0 ms"
    n_cues: int = pydantic.Field(2, ge=2)
    random_cues: bool = False


class DelayedCue(Task):
    name = "delayed_cue"
    loss = "mse"
    Config = DelayedCueConfig
    description = "remember a cue over a delay, report it in a response window (Kurtkaya et al. 2025)"

    @property
    def n_inputs(self) -> int:
        return self.config.n_cues

    @property
    def n_outputs(self) -> int:
        return self.config.n_cues

    def max_steps(self, level: Level | None = None) -> int:
        return sum(self.periods().values())

    def periods(self) -> dict[str, int]:
        """Steps of each period, in order."""
        minimum = {"cue": 1, "delay": 0, "response": 1, "post": 0}
        return {name: to_steps(getattr(self.config, name), self.dt, name, least)
                for name, least in minimum.items()}

    def sample(self, batch_size: int, rng: np.random.Generator,
               level: Level | None = None) -> Batch:
        steps = self.periods()
        total = sum(steps.values())
        if self.config.random_cues:
            cues = rng.integers(0, self.config.n_cues, size=batch_size)
        else:
            cues = np.arange(batch_size) % self.config.n_cues
        trials = np.arange(batch_size)
        inputs = np.zeros((batch_size, total, self.n_inputs))
        inputs[trials[:, None], np.arange(steps["cue"])[None, :], cues[:, None]] = 1.0
        targets = np.zeros((batch_size, total, self.n_outputs))
        start = steps["cue"] + steps["delay"]
        response = np.arange(start, start + steps["response"])
        targets[trials[:, None], response[None, :], cues[:, None]] = 1.0
        weighted = steps["response"] + steps["post"]
        weights = np.full(total, weighted / total)
        weights[total - weighted:] = 1.0 - weighted / total
        mask = np.broadcast_to(weights[None, :, None], targets.shape).copy()
        return Batch(inputs, targets, mask, {"cue": cues})

    def response_window(self, outputs: np.ndarray) -> np.ndarray:
        """The response steps of ``outputs`` ``(trial, time, output)``."""
        steps = self.periods()
        start = steps["cue"] + steps["delay"]
        return outputs[:, start:start + steps["response"]]

    def score(self, outputs: np.ndarray, batch: Batch, level: Level | None = None) -> np.ndarray:
        chosen = self.response_window(outputs).argmax(axis=-1)
        return np.array([float(np.mean(chosen == batch.conditions["cue"][:, None]))])

    def reliability(self, outputs: np.ndarray, batch: Batch,
                    level: Level | None = None) -> np.ndarray:
        window = self.response_window(outputs)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.nan_to_num(window / window.sum(axis=-1, keepdims=True))
        cue = batch.conditions["cue"]
        return np.array([float(np.mean(share[np.arange(len(cue)), :, cue]))])

    def describe_timing(self):
        return {name: {"seconds": getattr(self.config, name), "steps": n}
                for name, n in self.periods().items()}
