"""Node perturbation (Fiete & Seung 2006, PRL 97:048104; Werfel, Xie & Seung 2005, Neural
Comput 17:2699; Miconi 2017, eLife 6:e20899).

Gaussian noise ``xi`` (std ``sigma``, fresh at every step, unit and trial) is added to the
unit inputs: every perturbed coupling target T (``target = W @ source``). Each trial's error
``E`` (task loss plus regularizer penalties of that trial) is compared with a baseline
``E_bar`` (the same trial without perturbation, ``paired``, or a running average,
``running``), and the eligibility ``e_ij = sum_t xi_i(t) source_j(t-1)`` (the presynaptic
value that the perturbed input ``W @ source`` of step t used; the input at step t for input
couplings) gives the gradient estimate

    g_W = mean over trials of (E - E_bar) e / sigma^2,

whose expectation is the gradient of E to first order in sigma; the optimizer then steps
``-lr * g`` (with plain SGD: ``dW = -lr (E - E_bar) e / sigma^2``). Only forward passes are
needed, so it runs on the Brian2 backend as well (perturbations enter as TimedArrays; the
compiled code is reused between trials). The readout learns with its exact local rule
(``dE/da z^T``); other parameters (per-unit biases, time constants) are not trained by it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pydantic
import torch

from ..compile_torch import READOUT_ACTIVATIONS, readout_pre_activation
from .base import (LearningRule, RuleConfig, forward, objective, parameter_penalty,
                   values_at_step_start)


class NodePerturbationConfig(RuleConfig):
    sigma: float = pydantic.Field(0.01, gt=0, description="std of the input perturbation")
    baseline: Literal["paired", "running"] = "paired"
    baseline_decay: float = pydantic.Field(0.9, ge=0, lt=1,
                                           description="running baseline: E_bar <- d E_bar + "
                                                       "(1 - d) E")
    targets: list[str] | None = pydantic.Field(None, description="perturbed coupling "
                                                                 "targets (default: all)")


class NodePerturbation(LearningRule):
    """Node perturbation: correlate input noise with the change of the error."""

    name = "node_perturbation"
    Config = NodePerturbationConfig
    requires = frozenset()  # forward passes only: any backend
    description = "node perturbation with a paired or running baseline (Fiete & Seung 2006)"

    def check(self, model):
        if self.config.targets is None:
            return None
        allowed = [c.target for c in model.couplings.values() if model.params[c.name].trainable]
        wrong = [t for t in self.config.targets if t not in allowed]
        if wrong or not self.config.targets:
            return "targets", (f"{', '.join(map(repr, wrong)) or 'an empty list'}: give targets "
                               f"of trained couplings ({', '.join(allowed)}), or leave it out "
                               "for all")
        return None

    def perturbed(self, model) -> list:
        """The trained couplings whose targets are perturbed."""
        targets = self.config.targets or [c.target for c in model.couplings.values()]
        return [c for c in model.couplings.values()
                if c.target in targets and model.params[c.name].trainable]

    def init_state(self, context, params):
        state = super().init_state(context, params)
        if self.config.baseline == "running":
            n_members = next(iter(params.values())).shape[0]
            state["baseline"] = torch.full((n_members,), float("nan"), dtype=context.dtype,
                                           device=context.device)
        return state

    def estimate(self, context, params, batch, initial_state, level, state):
        model = context.model
        couplings = self.perturbed(model)
        sigma = self.config.sigma
        n_members = next(iter(params.values())).shape[0]
        shape = (n_members, batch.n_trials, batch.n_steps, model.n_units)
        noise = {c.target: context.randn(shape) * sigma for c in couplings}
        names = [c.source for c in couplings if c.source != "input"]
        outputs, recorded = self.forward_pass(context, params, batch, initial_state,
                                              names, noise)
        error = objective(context, params, batch, initial_state, level, outputs, recorded,
                          per_trial=True)  # (member, trial)
        if self.config.baseline == "paired":
            base_outputs, base_recorded = self.forward_pass(context, params, batch,
                                                            initial_state, names, None)
            baseline = objective(context, params, batch, initial_state, level, base_outputs,
                                 base_recorded, per_trial=True)
            readout_from = (base_outputs, base_recorded)
        else:
            running = state["baseline"]
            mean = error.mean(dim=1)
            running.copy_(torch.where(torch.isnan(running), mean, running))
            baseline = running[:, None].expand_as(error)
            readout_from = (outputs, recorded)
            running.mul_(self.config.baseline_decay).add_(
                (1 - self.config.baseline_decay) * mean)
        advantage = (error - baseline) / (sigma ** 2 * batch.n_trials)
        inputs = context.tensor(batch.inputs)
        gradients = {}
        for coupling in couplings:
            source = inputs.expand(n_members, *inputs.shape[-3:]) \
                if coupling.source == "input" else \
                values_at_step_start(context, params, coupling.source, recorded, initial_state)
            gradients[coupling.name] = torch.einsum("mb,mbtu,mbtp->mup", advantage,
                                                    noise[coupling.target], source)
        gradients.update(self.readout_gradient(context, params, batch, level, *readout_from))
        _, parameter_gradients = parameter_penalty(context, params,
                                                   self.trainable(context, params))
        for name, value in parameter_gradients.items():
            gradients[name] = gradients.get(name, 0.0) + value
        # the loss of the batch: unperturbed (paired), or as perturbed (running baseline);
        # per-trial errors already hold the regularizers' parameter part
        reported = baseline if self.config.baseline == "paired" else error
        return gradients, reported.mean(dim=1)

    def forward_pass(self, context, params, batch, initial_state, names, perturbations):
        """Outputs and recorded sources, on the torch step or on the run's backend."""
        model = context.model
        record = list(dict.fromkeys([*names, *context.recorded_variables(),
                                     model.readout.source]))
        if context.backend is None:
            return forward(context, params, batch, initial_state, record=record,
                           perturbations=perturbations)
        n_members = next(iter(params.values())).shape[0]
        generator = context.generator
        if isinstance(generator, (list, tuple)):
            if len(generator) != 1:
                raise ValueError("node perturbation on a backend runs one network at a time")
            generator = generator[0]
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=context.device))
        trajectory = context.backend.simulate(
            model, {k: v.cpu().numpy() for k, v in params.items()}, batch.inputs,
            {k: v if v.ndim == 3 else np.broadcast_to(v, (n_members, *v.shape))
             for k, v in initial_state.items()},
            record, noise=context.stepper.noise, seed=seed,
            perturbations={k: v.cpu().numpy() for k, v in (perturbations or {}).items()})
        recorded = {k: context.tensor(v) for k, v in trajectory.recorded.items()}
        return context.tensor(trajectory.outputs), recorded

    def readout_gradient(self, context, params, batch, level, outputs, recorded):
        """The readout's exact local gradient ``dE/da z^T`` (given the activity)."""
        model = context.model
        trained = {n for n in ("W_out", "b_out") if n in self.trainable(context, params)}
        if not trained:
            return {}
        source = recorded[model.readout.source] if model.readout.source in recorded else None
        if source is None:
            return {}
        with torch.enable_grad():
            leaves = {n: params[n].detach().clone().requires_grad_(True) for n in trained}
            pre = readout_pre_activation(model, source, {**params, **leaves})
            y = READOUT_ACTIVATIONS[model.readout.activation](pre)
            loss = context.task.loss_value(y, context.tensor(batch.targets),
                                           context.tensor(batch.mask), level)
            grads = torch.autograd.grad(loss, list(leaves.values()))
        return dict(zip(leaves, grads))
