"""e-prop (Bellec et al. 2020, Nat. Commun. 11:3625) and RFLO (Murray 2019, eLife 8:e43299).

Eligibility traces run forward in time next to the network. For a state ``h`` of unit j
(several state variables per unit are allowed) and a parameter theta of that unit:

    eps_t = (d h_t / d h_{t-1})_local eps_{t-1} + d h_t / d theta
    gradient estimate = sum_t L_t . (d z_t / d h_t) eps_t,   L_t = B^T dE_t / da_t

where "local" means through the unit's own variables only (the recurrent input
``W_rec @ r_{t-1}`` is held fixed), ``z`` is the readout's source, ``a = W_out z + b_out``
the readout's pre-activation, ``E_t`` the loss terms of step t, and ``B`` the feedback:
``W_out`` (symmetric e-prop: then the estimate equals autograd with the recurrent path
detached) or a fixed random matrix (random e-prop). The backend steps the network
(`TorchStepper.online_steps`, `bioplast.online`) and gives every step's unit-local
derivatives of the model's own update (the fused plan's sympy derivatives, or autograd's
Jacobian diagonals), so e-prop works for every equation-defined model; the rule keeps the
traces, learning signals and gradients. For a coupling ``target = W @ source``,
``d h_t / d W_ji = (d h_t / d target_j) source_i``.

The readout learns with its exact local rule (``dE/da z^T``). Regularizers add the
immediate partial derivative of their step term: w.r.t. states as an extra learning
signal, w.r.t. coupling targets through ``d target / d W = source``. Memory does not grow
with the trial length. ``update: online`` applies the estimate of every step at once
(the optimizer steps every time step); RFLO is e-prop with random feedback, updated online.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..compile_torch import READOUT_ACTIVATIONS, readout_pre_activation
from ..fused_loop import INVARIANT
from ..model import INPUT_SOURCE
from ..online import local_derivatives
from .base import LearningRule, RuleConfig, parameter_penalty


class EPropConfig(RuleConfig):
    feedback: Literal["symmetric", "random"] = "symmetric"
    update: Literal["per_trial", "online"] = "per_trial"


class RFLOConfig(EPropConfig):
    feedback: Literal["symmetric", "random"] = "random"
    update: Literal["per_trial", "online"] = "online"


def initial_traces(state_names, states, sources, unit_params):
    """Zero eligibility traces: ``(member, unit, trial, source unit)`` per coupling in
    ``sources`` (unit before trial, so that the contraction over trials is a batched matrix
    product without copies) and ``(member, trial, unit)`` per unit parameter, for every
    state variable; ``states`` are ``(member, trial, unit)``."""
    template = next(iter(states.values()))
    members, trials, units = template.shape
    traces = {name: {s: template.new_zeros(members, units, trials, source.shape[-1])
                     for s in state_names} for name, source in sources.items()}
    traces.update({name: {s: torch.zeros_like(template) for s in state_names}
                   for name in unit_params})
    return traces


class FilteredTrace:
    """The eligibility trace of a coupling whose unit-local factors are the same for every
    unit, trial and step of a network (``d h_t/d h_{t-1} = a`` and ``d h_t/d target = c``,
    one value per member: a linear unit such as ``leaky_current``): then
    ``eps_t[j, i] = c * ebar_t[i]`` with ``ebar_t = a * ebar_{t-1} + source_t`` (Bellec et
    al. 2020, the filtered presynaptic activity), so the trace is kept as ``ebar``,
    ``(member, trial, source unit)``, instead of ``(member, unit, trial, source unit)``."""

    def __init__(self, decay: torch.Tensor, scale: torch.Tensor, source: torch.Tensor):
        self.decay, self.scale = decay, scale
        self.filtered = torch.zeros_like(source)

    def advance(self, source: torch.Tensor) -> None:
        self.filtered.mul_(self.decay).add_(source)

    def contract(self, signal: torch.Tensor) -> torch.Tensor:
        """``sum over trials of signal_j eps[j, i]``, ``(member, unit, source unit)``."""
        return torch.bmm((signal * self.scale).transpose(1, 2), self.filtered)


def filtered_factors(context, params, couplings, changing=()) -> dict[str, tuple]:
    """``{coupling: (a, c)}`` for the couplings whose trace is a `FilteredTrace`: a
    one-state model whose update, as the fused loop writes it (`bioplast.fused_loop`),
    has derivatives w.r.t. its state and the coupling's target that are constants shared
    by all units (one value per member) and depend on no parameter in ``changing`` (those
    an online update changes during the pass)."""
    model, stepper = context.model, context.stepper
    plan = stepper.fused_plan
    if plan.problem is not None or len(model.state_names) != 1:
        return {}
    (state,) = model.state_names
    env = {**stepper.bind(params), "dt": model.dt, **stepper.held_constants}
    for name, (kind, function) in plan.hoisted.items():
        if kind == INVARIANT:
            env[name] = function(env)
    constant = {name for name, (kind, form) in plan.hoisted_forms.items()
                if kind == INVARIANT and not {p.name for p in form.free_symbols} & set(changing)}

    def shared(key):
        form = plan.derivative_forms.get(key)
        if form is None:
            return 0.0
        if not {s.name for s in form.free_symbols} <= constant:
            return None
        value = torch.as_tensor(plan.derivatives[key](env), dtype=context.dtype,
                                device=context.device)
        n_members = next(iter(params.values())).shape[0]
        if value.numel() not in (1, n_members) or (value.dim() and value.shape[-1] != 1):
            return None
        return value.reshape(-1, 1, 1) if value.dim() else value
    decay = shared((state, state))
    factors = {}
    for coupling in couplings:
        scale = shared((state, coupling.target)) if coupling.source != INPUT_SOURCE else None
        if decay is not None and scale is not None:
            factors[coupling.name] = (decay, scale)
    return factors


def propagate_traces(old, local, drive, source):
    """One step of ``eps_t[s] = sum_s2 local[s][s2] eps_{t-1}[s2] + drive[s] source`` for
    every state variable s (all factors broadcast to the traces' shape). With one state
    variable ``old`` is updated in place: its values are not needed afterwards."""
    names = list(old)
    if len(names) == 1:
        (name,) = names
        new = {name: old[name].mul_(local[name][name])}
    else:
        new = {s: sum(local[s][s2] * old[s2] for s2 in names) for s in names}
    for s in names:
        new[s].addcmul_(drive[s], source)
    return new


def add_trace_gradients(model, learning, traces, gradients):
    """``gradients[name] += sum over trials of learning[s] * traces[name][s]`` for every
    state s with a learning signal ``(member, trial, unit)`` (None: none); a shared unit
    parameter also sums over units."""
    for s, signal in learning.items():
        if signal is None:
            continue
        per_unit = signal.transpose(1, 2)[..., None, :]  # (member, unit, 1, trial)
        for name, by_state in traces.items():
            if isinstance(by_state, FilteredTrace):
                gradients[name] += by_state.contract(signal)
                continue
            if name in model.couplings:  # (member, unit, trial, source unit)
                gradients[name] += (per_unit @ by_state[s]).squeeze(-2)
                continue
            contribution = (signal * by_state[s]).sum(dim=1)
            if not model.params[name].dims:  # shared: one per network
                contribution = contribution.sum(dim=-1)
            gradients[name] += contribution


class EProp(LearningRule):
    """e-prop: eligibility traces and a learning signal from the readout error."""

    name = "eprop"
    Config = EPropConfig
    requires = frozenset({"online_step"})  # steps the network itself, with its traces
    description = "e-prop: eligibility traces from the model's equations (Bellec et al. 2020)"

    def init_state(self, context, params):
        state = super().init_state(context, params)
        if self.config.feedback == "random":  # B = randn / sqrt(n_units), fixed (Bellec)
            weight = params["W_out"]  # (member, output, unit)
            state["feedback"] = context.randn(weight.shape) / math.sqrt(weight.shape[-1])
        return state

    def estimate(self, context, params, batch, initial_state, level, state):
        return self.run(context, params, batch, initial_state, level, state)

    def update(self, context, params, batch, initial_state, level, state, optimizer):
        if self.config.update == "per_trial":
            return super().update(context, params, batch, initial_state, level, state,
                                  optimizer)
        with torch.no_grad():
            _, loss, norm = self.run(context, params, batch, initial_state, level, state,
                                     optimizer=optimizer)
        return loss, norm

    def run(self, context, params, batch, initial_state, level, state, optimizer=None):
        """The backend's online pass (`TorchStepper.online_steps`) with eligibility
        traces. Returns ``(gradient estimate, loss per member)``, or with an ``optimizer``
        (online) applies every step's estimate at once and returns ``(None, loss, largest
        step norm)`` per member."""
        model, stepper, task = context.model, context.stepper, context.task
        trained = self.trainable(context, params)
        n_members = next(iter(params.values())).shape[0]
        targets, mask = context.tensor(batch.targets), context.tensor(batch.mask)
        normalizer = task.loss_normalizer(mask, level)
        states = context.initial_tensors(initial_state, n_members)
        couplings = [c for c in model.couplings.values() if c.name in trained]
        unit_params = [n for n in model.equations.parameter_names
                       if n in trained]
        traces = None  # {coupling or unit parameter: {state: eligibility trace}}
        filtered = filtered_factors(context, params, couplings,
                                    changing=trained if optimizer is not None else ())
        gradients = {name: torch.zeros_like(value) for name, value in trained.items()}
        total_loss = torch.zeros(n_members, dtype=context.dtype, device=context.device)
        largest = torch.zeros(n_members, dtype=torch.float64, device=context.device)
        one = torch.ones((), dtype=context.dtype, device=context.device)
        previous_targets, previous_sources = None, {}
        n_steps = batch.inputs.shape[-2]
        for step in stepper.online_steps(stepper.bind(params), context.tensor(batch.inputs),
                                         states, context.generator, unit_params):
            derivative = step.derivatives
            sources = {c.name: step.sources[c.name] for c in couplings}
            if traces is None:  # the initial state does not depend on the parameters
                full = {c: v for c, v in sources.items() if c not in filtered}
                traces = initial_traces(model.state_names, states, full, unit_params)
                traces.update({c: FilteredTrace(*filtered[c], sources[c]) for c in filtered})
            # learning signal from the readout error of this step
            step_gradients = {name: torch.zeros_like(value) for name, value in trained.items()}
            signal, loss = self.learning_signal(context, params, step.new_states, step.env,
                                                targets, mask, normalizer, level, step.index,
                                                step_gradients, state)
            now, before, penalty = self.regularizer_signal(
                context, (states, previous_targets), (step.new_states, step.targets),
                step.env, n_steps)
            total_loss = total_loss + loss + penalty
            # the regularizers' partials w.r.t. coupling targets: d target / d W = source
            for partials, used in ((now, sources), (before, previous_sources)):
                for coupling in couplings:
                    if partials.get(coupling.target) is not None:
                        step_gradients[coupling.name] += torch.einsum(
                            "mbu,mbp->mup", partials[coupling.target], used[coupling.name])
            # partials w.r.t. the states before this step meet the traces before this step
            add_trace_gradients(model, {s: before.get(s) for s in model.state_names},
                                traces, step_gradients)
            local = {s: {s2: derivative[s][s2].transpose(1, 2)[..., None]
                         for s2 in model.state_names} for s in model.state_names}
            for coupling in couplings:  # (member, unit, trial, source) layout
                if coupling.name in filtered:
                    traces[coupling.name].advance(sources[coupling.name])
                    continue
                drive = {s: derivative[s][coupling.target].transpose(1, 2)[..., None]
                         for s in model.state_names}
                traces[coupling.name] = propagate_traces(
                    traces[coupling.name], local, drive, sources[coupling.name][:, None])
            for parameter in unit_params:  # (member, trial, unit) layout
                drive = {s: derivative[s][parameter] for s in model.state_names}
                traces[parameter] = propagate_traces(traces[parameter], derivative, drive, one)
            add_trace_gradients(model, {s: signal[s] + now.get(s, 0.0)
                                        for s in model.state_names}, traces, step_gradients)
            previous_targets, previous_sources = step.targets, sources
            if optimizer is not None:
                largest = torch.maximum(largest, self.apply(context, params, step_gradients,
                                                            optimizer))
            else:
                for name in gradients:
                    gradients[name] += step_gradients[name]
            states = step.new_states
        penalty, parameter_gradients = parameter_penalty(context, params, trained)
        total_loss = total_loss + penalty
        if optimizer is not None:
            if parameter_gradients:
                largest = torch.maximum(largest, self.apply(context, params,
                                                            parameter_gradients, optimizer))
            return None, total_loss, largest
        for name, value in parameter_gradients.items():
            gradients[name] += value
        return gradients, total_loss

    def learning_signal(self, context, params, new_states, env, targets, mask, normalizer,
                        level, step, gradients, state):
        """``({state: L_t * dz/dh}, loss of the step)``; adds the readout's exact local
        gradient of this step to ``gradients``."""
        model = context.model
        source_name = model.readout.source
        after = dict(env)
        after.update(new_states)
        source = context.stepper.value(source_name, after, None)
        with torch.enable_grad():
            pre_activation = readout_pre_activation(model, source, params)
            pre_activation = pre_activation.detach().requires_grad_(True)
            outputs = READOUT_ACTIVATIONS[model.readout.activation](pre_activation)
            loss = context.task.loss_value(outputs[:, :, None], targets[..., step:step + 1, :],
                                           mask[..., step:step + 1, :], level,
                                           normalizer=normalizer, per_trial=True).mean(dim=-1)
            (error,) = torch.autograd.grad(loss.sum(), pre_activation)
        if "W_out" in gradients:
            gradients["W_out"] += torch.einsum("mbo,mbu->mou", error, source)
        if "b_out" in gradients:
            gradients["b_out"] += error.sum(dim=1)
        feedback = state["feedback"] if self.config.feedback == "random" else params["W_out"]
        signal_z = torch.einsum("mbo,mou->mbu", error, feedback)
        signal = {}
        for s in model.state_names:
            if source_name == s:
                signal[s] = signal_z
            elif source_name in model.state_names:
                signal[s] = torch.zeros_like(signal_z)
            else:  # d z / d h_s of a subexpression source, per unit
                plain = context.stepper.plain[source_name]
                _, derivative = local_derivatives(
                    lambda h: {source_name: plain({**after, **h})}, new_states)
                signal[s] = signal_z * derivative[source_name][s]
        return signal, loss.detach()

    def regularizer_signal(self, context, previous, current, env, n_steps):
        """Partial derivatives of the regularizers' step term w.r.t. the values of this
        step and of the step before, each ``{state or coupling target: (member, trial,
        unit)}``; the values a regularizer reads from a subexpression are computed from
        the states, so their derivatives reach the states. Returns ``(now, before,
        penalty)``; at the first step the previous states are the initial ones and there
        are no previous targets."""
        if not context.regularizers:
            return {}, {}, 0.0
        model, stepper = context.model, context.stepper
        needed = {name for r in context.regularizers for name in r.variables(model)}

        def values(states, targets):
            out = {**states, **(targets or {})}
            for name in needed - set(out):
                if name in stepper.plain:
                    out[name] = stepper.plain[name]({**env, **out})
            return out

        with torch.enable_grad():
            leaves = []
            for states, targets in (current, previous):
                states = {k: v.detach().requires_grad_(True) for k, v in states.items()}
                targets = None if targets is None else \
                    {k: v.detach().requires_grad_(True) for k, v in targets.items()}
                leaves.append((states, targets))
            (now_states, now_targets), (old_states, old_targets) = leaves
            penalty = sum(torch.as_tensor(r.step_penalty(
                model, values(old_states, old_targets), values(now_states, now_targets),
                n_steps)) for r in context.regularizers)  # (member,)
            if not torch.is_tensor(penalty) or not penalty.requires_grad:
                return {}, {}, penalty
            groups = [now_states, now_targets, old_states, old_targets or {}]
            flat = [(i, k, v) for i, group in enumerate(groups) for k, v in group.items()]
            grads = torch.autograd.grad(penalty.sum(), [v for _, _, v in flat],
                                        allow_unused=True)
        now, before = {}, {}
        for (index, name, _), grad in zip(flat, grads):
            if grad is not None:
                (now if index < 2 else before)[name] = grad
        return now, before, penalty.detach()


class RFLO(EProp):
    """Random-feedback local online learning (Murray 2019): e-prop with fixed random
    feedback weights and updates at every time step."""

    name = "rflo"
    Config = RFLOConfig
    description = "RFLO: random feedback, online updates (Murray 2019)"


