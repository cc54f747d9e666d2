"""The torch backend's online loop: the network stepped one step at a time, with the
unit-local derivatives of every step (what e-prop and RFLO propagate their traces with).

`online_steps` is the loop (`TorchStepper.online_steps`): it draws the random numbers as
`TorchStepper.run` draws them (`TorchStepper.random_numbers`: same order, so a seed gives
the same noise) and yields one `OnlineStep` per step. Its consumer may change the
parameters in place between steps (online updates): each step reads them anew.

The derivatives ``d new state / d leaf`` (leaf: a state at the step's start, a coupling
target, a unit parameter; "local": through the unit's own variables only) come

- from the fused plan's sympy derivatives (`bioplast.fused_loop.FusedPlan`) where the
  model has one and the engine is ``fused``: `PlanDerivatives` chains the plan's
  derivatives w.r.t. its hoisted symbols with the hoisted symbols' own derivatives
  w.r.t. input targets and parameters, and evaluates them on the step's values (no
  autograd);
- else, and for every leaf sympy cannot differentiate, by autograd (`local_derivatives`)
  of the model's compiled update (`TorchStepper.local_update`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterator

import sympy
import torch

from .model import INPUT_SOURCE


@dataclass
class OnlineStep:
    """One step of the online loop; tensors ``(member, trial, unit)`` unless said.

    index: the step; env: its environment (`TorchStepper.environment`: parameters, states
    at its start, random numbers, held values, coupling targets); targets: ``{coupling
    target: value}``; sources: ``{coupling: (member, trial, source unit)}`` at the step's
    start (the input broadcast to the members); new_states: ``{state: value}`` at its end;
    derivatives: ``{state: {leaf: d new state / d leaf}}`` for every state, coupling target
    and requested unit parameter (broadcast views: read them, do not write them)."""

    index: int
    env: dict[str, Any]
    targets: dict[str, torch.Tensor]
    sources: dict[str, torch.Tensor]
    new_states: dict[str, torch.Tensor]
    derivatives: dict[str, dict[str, torch.Tensor]]


def local_derivatives(function, inputs: dict):
    """``(values, {output: {input: d output_j / d input_j}})`` of an elementwise
    ``function(inputs) -> {output: (member, trial, unit)}``: each unit's outputs depend on
    that unit's inputs only, so the gradient of an output's sum is its Jacobian's diagonal
    (one backward pass per output). Inputs are broadcast to the outputs' shape first
    (shared and per-unit parameters)."""
    with torch.enable_grad():
        leaves = {name: value.detach().requires_grad_(True) for name, value in inputs.items()}
        outputs = function(leaves)
        derivatives = {}
        for index, out in enumerate(outputs):
            grads = torch.autograd.grad(outputs[out].sum(), list(leaves.values()),
                                        retain_graph=index < len(outputs) - 1,
                                        allow_unused=True)
            derivatives[out] = {name: (g if g is not None else torch.zeros_like(outputs[out]))
                                for name, g in zip(leaves, grads)}
    return {name: value.detach() for name, value in outputs.items()}, derivatives


class PlanDerivatives:
    """``d new state / d leaf`` of a `FusedPlan`'s updates, as closures over one step's
    values. States and recurrent targets are leaves of the plan itself; an input target
    or a parameter enters through hoisted symbols ``h``, so its derivative is ``sum_h
    d update / d h * d h / d leaf`` (``d h / d leaf`` through the hoisted symbols ``h``
    is written in; a hoisted value added to a recurrent target counts as that target).
    ``uncovered`` lists the leaves sympy cannot differentiate (autograd's then)."""

    def __init__(self, plan, leaves: tuple[str, ...]):
        self.plan = plan
        self.uncovered = []
        forms = {}
        for leaf in leaves:
            try:
                forms.update({(s, leaf): form for s, form in self._forms(leaf).items()
                              if form != 0})
            except ValueError:
                self.uncovered.append(leaf)
        self.covered = [leaf for leaf in leaves if leaf not in self.uncovered]
        self.closures = {key: plan.compiled(form) for key, form in forms.items()}
        needed = {s.name for form in forms.values() for s in form.free_symbols}
        self.all_calls = bool(needed & {name for name, *_ in plan.calls})
        self.targets = [(c.target, plan.added[c.name]) for c in plan.recurrent
                        if c.name in plan.added and (self.all_calls or c.target in needed)]
        needed |= {h for _, h in self.targets}
        self.hoisted = [(name, function) for name, (_, function) in plan.hoisted.items()
                        if self.all_calls or name in self._closure(needed)]

    def _forms(self, leaf: str) -> dict[str, sympy.Expr]:
        """``{state: d update / d leaf}`` (sympy, over the plan's symbols)."""
        plan = self.plan
        if leaf in plan.states or leaf in {c.target for c in plan.recurrent}:
            return {s: plan.derivative_forms.get((s, leaf), 0) for s in plan.states}
        through = self._hoisted_derivatives(leaf)
        added = {h: c.target for c, h in ((c, plan.added.get(c.name)) for c in plan.recurrent)
                 if h is not None}
        return {s: sympy.Add(*[(plan.derivative_forms.get((s, h), 0) +
                                plan.derivative_forms.get((s, added.get(h)), 0)) * d
                               for h, d in through.items()]) for s in plan.states}

    def _hoisted_derivatives(self, leaf: str) -> dict[str, sympy.Expr]:
        """``{hoisted symbol: d h / d leaf}``, nonzero ones, through the hoisted symbols
        each is written in (the plan keeps them in order of dependence)."""
        totals = {}
        for name, (_, form) in self.plan.hoisted_forms.items():
            total = self.plan.derivative(form, leaf)
            for inner in form.free_symbols:
                if inner.name in totals:
                    total += self.plan.derivative(form, inner.name) * totals[inner.name]
            if total != 0:
                totals[name] = total
        return totals

    def _closure(self, names: set[str]) -> set[str]:
        """``names`` with the hoisted symbols their hoisted symbols are written in."""
        names = set(names)
        for name, (_, form) in reversed(self.plan.hoisted_forms.items()):
            if name in names:
                names |= {s.name for s in form.free_symbols}
        return names

    def __call__(self, env: dict, shape) -> dict[str, dict[str, torch.Tensor]]:
        """``{state: {covered leaf: (member, trial, unit)}}`` at the step whose
        environment is ``env`` (broadcast views; zeros where the plan has no term)."""
        values = dict(env)
        for name, function in self.hoisted:
            values[name] = function(values)
        for target, added in self.targets:
            values[target] = env[target] + values[added]
        if self.all_calls:
            for name, function, _ in self.plan.calls:
                values[name] = function(values)
        template = env[self.plan.states[0]]
        zero = template.new_zeros(()).expand(shape)
        return {s: {leaf: _broadcast(self.closures[(s, leaf)](values), template, shape)
                    if (s, leaf) in self.closures else zero for leaf in self.covered}
                for s in self.plan.states}


def _broadcast(value, like: torch.Tensor, shape) -> torch.Tensor:
    if not torch.is_tensor(value):
        value = like.new_tensor(value)
    return value.expand(shape)


@functools.lru_cache(maxsize=64)
def plan_derivatives(plan, leaves: tuple[str, ...]) -> PlanDerivatives:
    """`PlanDerivatives` of ``plan`` for ``leaves`` (cached: the sympy work is done once
    per plan and set of leaves)."""
    return PlanDerivatives(plan, leaves)


def online_steps(stepper, bound, inputs: torch.Tensor, states, generator=None,
                 parameters=()) -> Iterator[OnlineStep]:
    """Step ``stepper``'s network through ``inputs`` ``([member,] trial, time, input)``
    from ``states`` (``(member, trial, unit)`` each), with parameters ``bound``
    (`TorchStepper.bind`: views, so that changes made between steps are seen); yields one
    `OnlineStep` per step, with the derivatives w.r.t. the unit parameters named in
    ``parameters``. The random numbers are drawn now, as `TorchStepper.run` draws them."""
    inputs_by_step = inputs.unbind(-2)
    shape = next(iter(states.values())).shape
    random = stepper.random_numbers(shape, len(inputs_by_step), generator)
    plan = stepper.fused_plan
    couplings = list(stepper.model.couplings.values())
    leaves = (*stepper.model.state_names, *(c.target for c in couplings), *parameters)
    derivatives = plan_derivatives(plan, leaves) \
        if stepper.engine == "fused" and plan.problem is None else None
    return _steps(stepper, bound, inputs_by_step, states, random, parameters, derivatives)


def _steps(stepper, bound, inputs_by_step, states, random, parameters, derivatives):
    """The loop of `online_steps`."""
    model = stepper.model
    shape = next(iter(states.values())).shape
    for k, inputs_t in enumerate(inputs_by_step):
        env = stepper.environment(states, inputs_t, bound, k * model.dt, random_t=random[k])
        targets = {c.target: env[c.target] for c in model.couplings.values()}
        sources = {c.name: stepper.value(c.source, env, inputs_t)
                   for c in model.couplings.values()}
        sources.update({c.name: sources[c.name].expand(shape[0], *sources[c.name].shape[-2:])
                        for c in model.couplings.values() if c.source == INPUT_SOURCE})
        own = {p: bound[p].expand(shape) for p in parameters}
        new_states, local = _local_step(stepper, env, states, targets, own, derivatives,
                                        shape)
        yield OnlineStep(k, env, targets, sources, new_states, local)
        states = new_states


def _local_step(stepper, env, states, targets, own, derivatives, shape):
    """``(new states, {state: {leaf: d new state / d leaf}})`` of the step whose
    environment is ``env``: the plan's derivatives (``derivatives``, a `PlanDerivatives`)
    where they cover a leaf, autograd's (`local_derivatives` of
    `TorchStepper.local_update`) for the others and without a plan."""
    values = {**states, **targets, **own}
    by_autograd = values if derivatives is None else \
        {leaf: values[leaf] for leaf in derivatives.uncovered}
    if by_autograd:
        new_states, local = local_derivatives(
            lambda v: stepper.local_update(
                env, {s: v.get(s, states[s]) for s in states},
                {t: v.get(t, targets[t]) for t in targets},
                {p: v.get(p, own[p]) for p in own}), by_autograd)
    else:
        with torch.no_grad():
            new_states, local = stepper.advance(env), {s: {} for s in states}
    if derivatives is not None:
        with torch.no_grad():
            for s, by_leaf in derivatives(env, shape).items():
                local[s].update(by_leaf)
    return new_states, local
