"""Optimizers for ensembles: one independent optimizer per member, as one batched update.

`MemberOptimizer` applies ``torch.optim.SGD`` (momentum, Nesterov, weight decay) or
``torch.optim.Adam`` to parameters shaped ``(member, ...)``, with each member's own
hyperparameters (learning rate, momentum, weight decay, betas), its own gradient-norm
clipping and its own state (step count, momentum buffer or moment estimates). Members that
are not ``active`` in a step (finished ones) change neither parameters nor state, so every
member follows exactly the path it would follow if trained alone. The formulas are the ones
in the torch documentation of SGD and Adam (tested against torch.optim).

A learning-rate schedule (`Schedule`: ``plateau``, ``step``, ``cosine``, the formulas of
``torch.optim.lr_scheduler``, tested against it) changes each member's learning rate once
per epoch (`MemberOptimizer.end_epoch`), from that member's own state and loss.
"""

from __future__ import annotations

import math
from typing import ClassVar, Mapping, Sequence

import torch

ADAM_EPS = 1e-8  # torch.optim.Adam's default
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_: scale = clip / (norm + 1e-6)


PLATEAU_EPS = 1e-8  # ReduceLROnPlateau's default: smaller reductions are skipped


class Schedule:
    """The learning rate of one network, epoch by epoch, as the ``torch.optim.lr_scheduler``
    class of its kind computes it (in Python floats, so the sequence is the same).

    Parameters
    ----------
    config : ScheduleConfig
        ``kind`` and its fields (`bioplast.rules.base.ScheduleConfig`).
    lr : float
        The initial learning rate (the optimizer's ``lr``).
    """

    #: the state that `state_dict` saves, besides ``lr`` and ``epoch``
    KEEPS: ClassVar[dict[str, tuple[str, ...]]] = {"plateau": ("best", "bad_epochs"),
                                                   "step": (), "cosine": ()}

    def __init__(self, config, lr: float):
        self.config = config
        self.base_lr = lr
        self.lr = lr
        self.epoch = 0  # torch's last_epoch: steps taken
        self.best = math.inf
        self.bad_epochs = 0

    @property
    def fields(self) -> tuple[str, ...]:
        return ("lr", "epoch", *self.KEEPS[self.config.kind])

    def step(self, loss: float) -> float:
        """The learning rate after one more epoch whose mean training loss was ``loss``
        (read by ``plateau`` only)."""
        self.epoch += 1
        self.lr = getattr(self, f"_{self.config.kind}_lr")(loss)
        return self.lr

    def _plateau_lr(self, loss: float) -> float:
        config = self.config
        if loss < self.best * (1.0 - config.threshold):
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs <= config.patience:
            return self.lr
        self.bad_epochs = 0
        reduced = max(self.lr * config.factor, config.min_lr)
        return reduced if self.lr - reduced > PLATEAU_EPS else self.lr

    def _step_lr(self, loss: float) -> float:
        return self.lr * self.config.gamma if self.epoch % self.config.step_size == 0 \
            else self.lr

    def _cosine_lr(self, loss: float) -> float:
        t_max, eta_min = self.config.T_max, self.config.eta_min
        if (self.epoch - 1 - t_max) % (2 * t_max) == 0:
            return self.lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * self.epoch / t_max)) / \
            (1 + math.cos(math.pi * (self.epoch - 1) / t_max)) * (self.lr - eta_min) + eta_min

    def state_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.fields}

    def load_state_dict(self, saved: Mapping[str, float]) -> None:
        for name in self.fields:
            setattr(self, name, type(getattr(self, name))(saved[name]))


class MemberOptimizer:
    """Independent SGD or Adam per member.

    Parameters
    ----------
    configs : sequence of OptimizerConfig
        One per member; all with the same ``name``, ``nesterov`` and ``schedule`` kind.
    grad_clips : sequence of float or None
        Maximum gradient norm per member (None: no clipping).
    params : dict of str to tensor (member, ...)
        The trained parameters (their dtype and device are used for the state).
    """

    def __init__(self, configs: Sequence, grad_clips: Sequence, params: Mapping[str, torch.Tensor]):
        names = {config.name for config in configs}
        if len(names) != 1 or len({config.nesterov for config in configs}) != 1:
            raise ValueError("members of an ensemble need the same optimizer and nesterov "
                             "setting (learning rate, momentum, weight decay and betas may "
                             "differ)")
        if len({config.schedule and config.schedule.kind for config in configs}) != 1:
            raise ValueError("members of an ensemble need the same kind of schedule")
        self.name = names.pop()
        self.nesterov = configs[0].nesterov
        reference = next(iter(params.values()))

        def column(values):
            return torch.tensor(values, dtype=reference.dtype, device=reference.device)

        self.initial_lr = [config.lr for config in configs]
        self.lr = column(self.initial_lr)
        #: one `Schedule` per member, or None (constant learning rates)
        self.schedules = [Schedule(config.schedule, lr) for config, lr in
                          zip(configs, self.initial_lr)] if configs[0].schedule else None
        self.momentum = column([config.momentum for config in configs])
        self.weight_decay = column([config.weight_decay for config in configs])
        self.beta1 = column([config.betas[0] for config in configs])
        self.beta2 = column([config.betas[1] for config in configs])
        self.clip = column([float("inf") if clip is None else clip for clip in grad_clips])
        # torch.optim counts steps per parameter (a parameter without a gradient is skipped)
        self.steps = {name: torch.zeros(len(configs), dtype=torch.int64,
                                        device=reference.device) for name in params}
        buffers = ("momentum",) if self.name == "sgd" else ("exp_avg", "exp_avg_sq")
        self.buffers = {buffer: {name: torch.zeros_like(value) for name, value in params.items()}
                        for buffer in buffers}

    @staticmethod
    def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values (member,)`` shaped to broadcast against ``like (member, ...)``."""
        return values.reshape(-1, *([1] * (like.dim() - 1)))

    def norms(self, gradients: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Gradient norm per member, ``(member,)``, over all parameters."""
        total = sum((g.double() ** 2).flatten(1).sum(dim=1) for g in gradients.values())
        return torch.sqrt(total)

    def step(self, params: Mapping[str, torch.Tensor], gradients: Mapping[str, torch.Tensor],
             active: torch.Tensor | None = None) -> torch.Tensor:
        """Update ``params`` in place from ``gradients`` (parameters without one are left
        alone, as torch.optim does) for the ``active (member,)`` bool members (default:
        all); returns the gradient norm per member before clipping (members with a
        non-finite norm are not updated)."""
        norms = self.norms(gradients)
        active = torch.isfinite(norms) if active is None else active & torch.isfinite(norms)
        scale = torch.clamp(self.clip.double() / (norms + CLIP_EPS), max=1.0)
        scale = torch.where(torch.isinf(self.clip), torch.ones_like(scale), scale)
        for name, gradient in gradients.items():
            param = params[name]
            mask = self._per_member(active, param)
            grad = gradient * self._per_member(scale.to(param.dtype), param)
            grad = torch.where(mask, grad, torch.zeros_like(grad))  # no NaN into the state
            grad = grad + self._per_member(self.weight_decay, param) * param
            if self.name == "sgd":
                new_param = self._sgd(name, param, grad, mask)
            else:
                self.steps[name] = self.steps[name] + active.long()
                new_param = self._adam(name, param, grad, mask, self.steps[name])
            param.copy_(torch.where(mask, new_param, param))
        return norms

    def _sgd(self, name, param, grad, mask):
        momentum = self._per_member(self.momentum, param)
        buffer = self.buffers["momentum"][name]
        new_buffer = momentum * buffer + grad
        buffer.copy_(torch.where(mask, new_buffer, buffer))
        direction = grad + momentum * new_buffer if self.nesterov else new_buffer
        return param - self._per_member(self.lr, param) * direction

    def _adam(self, name, param, grad, mask, steps):
        beta1 = self._per_member(self.beta1, param)
        beta2 = self._per_member(self.beta2, param)
        exp_avg, exp_avg_sq = self.buffers["exp_avg"][name], self.buffers["exp_avg_sq"][name]
        new_avg = torch.lerp(exp_avg, grad, 1 - beta1)
        new_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * (grad * grad)
        exp_avg.copy_(torch.where(mask, new_avg, exp_avg))
        exp_avg_sq.copy_(torch.where(mask, new_avg_sq, exp_avg_sq))
        count = self._per_member(torch.clamp(steps, min=1).to(param.dtype), param)
        bias_correction1 = 1 - beta1 ** count
        bias_correction2 = 1 - beta2 ** count
        step_size = self._per_member(self.lr, param) / bias_correction1
        denom = new_avg_sq.sqrt() / bias_correction2.sqrt() + ADAM_EPS
        return param - step_size * (new_avg / denom)

    def learning_rates(self) -> list[float]:
        """The learning rate of each member now (float64, as its schedule computes it)."""
        return [s.lr for s in self.schedules] if self.schedules else list(self.initial_lr)

    def end_epoch(self, losses: Mapping[int, float]) -> None:
        """Step the schedules of the members in ``losses`` (member index -> the epoch's mean
        training loss) and take their new learning rates; nothing without a schedule."""
        if not self.schedules:
            return
        for index, loss in losses.items():
            self.lr[index] = self.schedules[index].step(loss)

    def select(self, members: torch.Tensor) -> "MemberOptimizer":
        """A copy for the ``members`` (index tensor) of this ensemble, for `assign` (the
        schedules stay here: `end_epoch` steps them)."""
        part = object.__new__(MemberOptimizer)
        part.name, part.nesterov, part.schedules = self.name, self.nesterov, None
        for name in ("lr", "momentum", "weight_decay", "beta1", "beta2", "clip"):
            setattr(part, name, getattr(self, name)[members])
        part.steps = {name: value[members] for name, value in self.steps.items()}
        part.buffers = {buffer: {name: value[members] for name, value in values.items()}
                        for buffer, values in self.buffers.items()}
        return part

    def assign(self, members: torch.Tensor, part: "MemberOptimizer") -> None:
        """Take over the state of ``part`` (from `select`) for ``members``."""
        for name, value in self.steps.items():
            value[members] = part.steps[name]
        for buffer, values in self.buffers.items():
            for name, value in values.items():
                value[members] = part.buffers[buffer][name]

    def state_dict(self) -> dict:
        """Tensors only (for ``torch.save`` / ``weights_only``); the schedules' state as
        ``schedule.<field>`` float64 ``(member,)``."""
        schedules = {f"schedule.{name}": torch.tensor([s.state_dict()[name]
                                                       for s in self.schedules],
                                                      dtype=torch.float64)
                     for name in self.schedules[0].fields} if self.schedules else {}
        return {**{f"steps.{name}": value.clone() for name, value in self.steps.items()},
                **{f"{buffer}.{name}": value.clone()
                   for buffer, values in self.buffers.items() for name, value in values.items()},
                **schedules}

    def load_state_dict(self, saved: Mapping[str, torch.Tensor]) -> None:
        for name, value in self.steps.items():
            value.copy_(saved[f"steps.{name}"])
        for buffer, values in self.buffers.items():
            for name, value in values.items():
                value.copy_(saved[f"{buffer}.{name}"])
        for index, schedule in enumerate(self.schedules or []):
            schedule.load_state_dict({name: saved[f"schedule.{name}"][index].item()
                                      for name in schedule.fields})
            self.lr[index] = schedule.lr
