"""NeuroGym environments as bioplast tasks (the optional extra ``bioplast[neurogym]``).

A NeuroGym environment (``TrialEnv``) builds each trial as arrays: observations ``env.ob``
``(time, observation)``, the ground-truth action ``env.gt`` ``(time,)`` (a class index per
step) and the trial's info ``env.trial`` (a dict: ``ground_truth``, coherence, ...). This
task turns them into a `Batch`:

- inputs: the observations (float64);
- targets: the ground truth one-hot over the environment's discrete actions, one head whose
  channels are all the actions, trained with cross-entropy (the NeuroGym convention);
- mask: 1 at every step of the trial (NeuroGym's supervised convention: the network must
  also fixate, action 0, outside the decision), or with ``loss_period`` only at the steps of
  that period of the environment (e.g. ``decision``); 0 on padding;
- conditions: the trial info's scalar entries (numbers and booleans), one per key.

Trials have different lengths; every trial is laid in ``duration`` steps from its start:
shorter ones are padded (inputs 0, mask 0), longer ones cut. Without ``duration`` it is the
longest of `LENGTH_PROBE_TRIALS` trials drawn from the environment seeded with 0.

Time step: the environment runs at the model's ``dt`` (its ``dt`` argument, in ms, is set
from the model; ``env_kwargs`` may not hold ``dt``). Its ``timing`` is in ms, as NeuroGym's.
Randomness: each batch seeds the environment with `environment_seed` of the generator.
neurogym is imported only when a task is made.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from typing import Any

import numpy as np
import pydantic

from ..errors import InputError
from .base import (Batch, Level, Seconds, Task, TaskConfig, TimingError,
                   classification_accuracy, classification_reliability, to_steps)

#: trials drawn (environment seeded with 0) to size trials when ``duration`` is not given
LENGTH_PROBE_TRIALS = 100

#: what `env_kwargs` values may be: plain data, as YAML writes it
PLAIN_TYPES = (bool, int, float, str, type(None))


def check_plain(value, key: str) -> None:
    """Raise `TimingError` at ``env_kwargs`` unless ``value`` is plain data (numbers,
    strings, booleans, null, and lists and mappings of them)."""
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TimingError("env_kwargs", f"{key}: keys must be text, got {name!r}")
            check_plain(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{key}.{index}")
    elif not isinstance(value, PLAIN_TYPES):
        raise TimingError("env_kwargs", f"{key}: must be a number, text, a list or a "
                                        f"mapping, got {type(value).__name__}")


class NeuroGymConfig(TaskConfig):
    env: str = pydantic.Field(description="NeuroGym environment id, e.g. PerceptualDecisionMaking-v0")
    env_kwargs: dict[str, Any] = pydantic.Field(
        default_factory=lambda: {}, description="keyword arguments of the environment (timing in ms)")
    duration: Seconds | None = pydantic.Field(
        None, description="trial length; default: the longest of 100 trials")
    loss_period: str | None = pydantic.Field(
        None, description="the environment period the loss weighs; default: every step")


def import_neurogym():
    """The neurogym package, or an `InputError` saying how to install it."""
    try:
        return importlib.import_module("neurogym")
    except ImportError:
        raise InputError("the neurogym task needs NeuroGym: pip install "
                         "'bioplast[neurogym]'") from None


def environment_class(env: str):
    """The class registered in NeuroGym as ``env``; `TimingError` at ``env`` listing close
    names on a miss."""
    registered = importlib.import_module("neurogym.envs.registration").ALL_ENVS
    if env not in registered:
        close = difflib.get_close_matches(env, registered, n=5, cutoff=0.5)
        raise TimingError("env", f"unknown NeuroGym environment '{env}' (close: "
                                 f"{', '.join(close) or 'none'}; all: "
                                 f"{', '.join(sorted(registered))})")
    module, _, name = registered[env].partition(":")
    return getattr(importlib.import_module(module), name)


def make_environment(config: NeuroGymConfig, dt: float):
    """The unwrapped environment of ``config`` stepping ``dt`` seconds."""
    import_neurogym()
    cls = environment_class(config.env)
    check_plain(config.env_kwargs, "env_kwargs")
    accepted = [name for name in inspect.signature(cls.__init__).parameters
                if name not in ("self", "dt")]
    for key in config.env_kwargs:
        if key not in accepted:
            raise TimingError("env_kwargs", f"env_kwargs.{key}: {config.env} takes "
                                            f"{', '.join(accepted) or 'no arguments'}"
                              + ("; its dt is the model's dt" if key == "dt" else ""))
    try:
        env = cls(dt=round(dt * 1e3, 9), **config.env_kwargs)
    except ENVIRONMENT_ERRORS as error:
        raise refused(config, error) from None
    if not hasattr(env.action_space, "n") or env.action_space.shape != ():
        raise TimingError("env", f"{config.env} has no discrete actions "
                                 f"({env.action_space}); only discrete ones are supported")
    return env


#: what an environment raises on arguments it cannot use, at construction or on a trial
ENVIRONMENT_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError)


def refused(config: NeuroGymConfig, error: Exception) -> TimingError:
    """The error at ``env_kwargs`` for an environment that failed on them."""
    return TimingError("env_kwargs", f"{config.env} refused env_kwargs: {error}")


def environment_seed(rng: np.random.Generator) -> int:
    """The seed a batch gives the environment, drawn from the task's generator."""
    return int(rng.integers(2 ** 31))


def scalar_info(trial: dict) -> dict[str, float | int | bool]:
    """The scalar entries (numbers, booleans) of a trial's info."""
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in trial.items()
            if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating))}


class NeuroGym(Task):
    name = "neurogym"
    loss = "cross_entropy"
    Config = NeuroGymConfig
    description = "a NeuroGym environment's trials (pip install 'bioplast[neurogym]')"

    def __init__(self, config: NeuroGymConfig, dt: float):
        super().__init__(config, dt)
        self.env = make_environment(config, dt)
        if config.loss_period is not None and config.loss_period not in self.env.timing:
            raise TimingError("loss_period", f"{config.env} has no period "
                                             f"'{config.loss_period}' (periods: "
                                             f"{', '.join(self.env.timing)})")
        self._steps = None if config.duration is None else \
            to_steps(config.duration, dt, "duration", 1)

    @property
    def n_inputs(self) -> int:
        return math.prod(self.env.observation_space.shape)

    @property
    def n_outputs(self) -> int:
        return int(self.env.action_space.n)

    def head_channels(self, head: int) -> slice:
        return slice(0, self.n_outputs)

    def max_steps(self, level: Level | None = None) -> int:
        if self._steps is None:
            self.env.seed(0)
            self._steps = max(len(self.draw_trial()[0]) for _ in range(LENGTH_PROBE_TRIALS))
        return self._steps

    def draw_trial(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """One new trial of the environment: observations ``(time, input)``, ground truth
        ``(time,)``, loss weights ``(time,)`` and its scalar info."""
        try:
            info = self.env.new_trial()
        except ENVIRONMENT_ERRORS as error:
            raise refused(self.config, error) from None
        weights = np.ones(len(self.env.gt))
        if self.config.loss_period is not None:
            weights[:] = 0.0
            period = self.config.loss_period
            weights[self.env.start_ind[period]:self.env.end_ind[period]] = 1.0
        return (self.env.ob.reshape(len(self.env.ob), -1), np.asarray(self.env.gt),
                weights, scalar_info(info))

    def sample(self, batch_size: int, rng: np.random.Generator,
               level: Level | None = None) -> Batch:
        n_steps = self.max_steps(level)
        self.env.seed(environment_seed(rng))
        inputs = np.zeros((batch_size, n_steps, self.n_inputs))
        targets = np.zeros((batch_size, n_steps, self.n_outputs))
        mask = np.zeros((batch_size, n_steps, self.n_outputs))
        infos = []
        for index in range(batch_size):
            observations, truth, weights, info = self.draw_trial()
            kept = min(len(truth), n_steps)
            inputs[index, :kept] = observations[:kept]
            targets[index, np.arange(kept), truth[:kept]] = 1.0
            mask[index, :kept] = weights[:kept, None]
            infos.append(info)
        keys = [key for key in infos[0] if all(key in info for info in infos)]
        return Batch(inputs, targets, mask,
                     {key: np.array([info[key] for info in infos]) for key in keys})

    def score(self, outputs: np.ndarray, batch: Batch, level: Level | None = None) -> np.ndarray:
        return np.array([classification_accuracy(outputs, batch, self.head_channels(0))])

    def reliability(self, outputs: np.ndarray, batch: Batch,
                    level: Level | None = None) -> np.ndarray:
        return np.array([classification_reliability(outputs, batch, self.head_channels(0))])

    def describe_timing(self):
        return {"duration": {"seconds": self.max_steps() * self.dt, "steps": self.max_steps()}}
