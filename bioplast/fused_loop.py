"""The time loop of the torch backend, fused: few kernels per step and a hand-written adjoint.

`fused_run` steps a `TorchStepper`'s model through a batch like `TorchStepper.run`'s eager
loop (same numbers: tested to 1e-10 in float64, gradients included) but does per step only
what depends on the recurrence. A `FusedPlan` is built once per model structure, dtype and
device (`plan_for`):

1. **Hoisting.** The sympy form of each state update (held and plain subexpressions written
   out) is put as ``sum_i c_i * d_i`` (`Hoisting.linear`) and every maximal state-free part
   becomes one symbol, computed before the loop for all steps at once: once when it is
   constant over time (``1 - dt/tau``, common factors cancelled), as one ``(time, member,
   trial, unit)`` block when it changes from step to step but not with the state (inputs
   through their couplings, noise, biases added to them: ``I_in + b + sigma*randn()``, as a
   sum of constant-coefficient terms). These run in ordinary autograd, so gradients reach
   the parameters inside them by torch's rules. A recurrent target that enters only as
   ``target + h`` is computed as ``baddbmm(h, source, W^T)``; function calls on the state
   (``tanh(...)``) are saved. The loop then evaluates e.g. ``c1*r + c2*tanh(I_rec + h_t)``:
   one matrix product and three elementwise kernels per step, without autograd.
2. **Adjoint.** The loop is one `torch.autograd.Function` whose backward is backpropagation
   through time written out: the unit-local derivatives of the updates w.r.t. the states,
   the recurrent targets and the hoisted values are sympy's (functions sympy leaves
   underived get autograd's conventions at kinks: `_DIFFERENTIABLE`), written over the
   saved values and evaluated step by step inside the backward loop (common subexpressions
   once; a step's values stay in cache, no block per derivative); then per step ``delta_t
   = lambda_t * d x_t/d target`` and ``lambda_{t-1} = g_{t-1} + (delta_t @ W) * d source/d
   x + lambda_t * (d x_t/d x_{t-1})_local``: one ``baddbmm`` and one ``addcmul`` per state.
   The weights' gradients are one matrix product over all steps and trials, the hoisted
   values' elementwise products accumulated per step (a delta where they are equal).

Truncation (states cut from the graph every k steps), ``detach_recurrent`` (e-prop's
credit) and perturbations of coupling targets (node perturbation) have the eager loop's
meaning. Models the plan cannot differentiate (``exprel`` in an update, a coupling source
computed from a coupling target) get a ``problem`` and run on the eager loop.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import sympy
import torch
from tqdm.auto import tqdm

from .expressions import UnsupportedExpression, compile_expression
from .model import INPUT_SOURCE

DYNAMIC, STREAM, INVARIANT = "dynamic", "stream", "invariant"


class Hoisting:
    """The state-free parts of a set of expressions, each replaced by a symbol.

    ``dynamic`` names the symbols that change with the state, ``stream`` those that change
    from step to step only (random numbers, input targets, ``t``); every other symbol is
    constant during a run (parameters, ``dt``). `hoist` returns the rewritten expression;
    `hoisted` maps each new symbol's name to ``(kind, expression)``.
    """

    def __init__(self, dynamic: set[str], stream: set[str]):
        self.dynamic, self.stream = dynamic, stream
        self.hoisted: dict[str, tuple[str, sympy.Expr]] = {}
        self._names: dict[sympy.Expr, sympy.Symbol] = {}

    def kind(self, expr: sympy.Basic) -> str:
        names = {s.name for s in expr.free_symbols}
        if names & self.dynamic:
            return DYNAMIC
        return STREAM if names & self.stream else INVARIANT

    def _symbol(self, expr: sympy.Expr) -> sympy.Expr:
        if expr.is_Number or expr.is_NumberSymbol or expr in (sympy.oo, -sympy.oo) or \
                expr is sympy.true or expr is sympy.false:
            return expr
        if expr not in self._names:
            kind = self.kind(expr)
            form = self._per_step(expr) if kind == STREAM else _simplified(expr)
            symbol = sympy.Symbol(f"_hoisted{len(self._names)}", real=True)
            self._names[expr] = symbol
            self.hoisted[symbol.name] = (kind, form)
        return self._names[expr]

    def _per_step(self, expr: sympy.Expr) -> sympy.Expr:
        """A value that changes from step to step as ``sum_i c_i * s_i``: the constant
        coefficients ``c_i`` hoisted on their own (computed once, small), so that the
        ``(time, member, trial, unit)`` block costs one multiply-add per term."""
        return self._sum_of_products(expr, STREAM, lambda varying: varying)

    def linear(self, expr: sympy.Expr) -> sympy.Expr:
        """`hoist` of ``expr`` written as ``sum_i c_i * d_i``: the products distributed
        over sums (outside function arguments) and the terms grouped by their
        state-dependent factor ``d_i``, so that ``x + dt*(-x + f)/tau`` becomes ``c1*x +
        c2*f`` with ``c1 = 1 - dt/tau`` and ``c2 = dt/tau`` hoisted (fewer kernels per
        step)."""
        return self._sum_of_products(expr, DYNAMIC, self.hoist)

    def _sum_of_products(self, expr: sympy.Expr, kind: str, factor) -> sympy.Expr:
        """``expr`` as ``sum_i c_i * factor(d_i)``: terms grouped by their factors of
        ``kind`` (``d_i``), the other factors summed per group into a hoisted ``c_i``."""
        groups: dict[sympy.Expr, list[sympy.Expr]] = {}
        for term in _terms(expr):
            factors = sympy.Mul.make_args(term)
            varying = sympy.Mul(*[f for f in factors if self.kind(f) == kind])
            groups.setdefault(varying, []).append(
                sympy.Mul(*[f for f in factors if self.kind(f) != kind]))
        parts = []
        for varying, coefficients in groups.items():
            coefficient = sympy.Add(*coefficients)
            if coefficient == 0:
                continue
            if varying == 1:
                parts.append(self._symbol(coefficient))
            elif coefficient == 1:
                parts.append(factor(varying))
            else:
                parts.append(sympy.Mul(self._symbol(coefficient), factor(varying),
                                       evaluate=False))
        return sympy.Add(*parts, evaluate=False) if len(parts) > 1 else \
            (parts[0] if parts else sympy.Integer(0))

    def hoist(self, expr: sympy.Expr) -> sympy.Expr:
        if self.kind(expr) != DYNAMIC:
            return self._symbol(expr)
        if isinstance(expr, sympy.Symbol):
            return expr
        if isinstance(expr, (sympy.Add, sympy.Mul)):
            moving = [self.hoist(a) for a in expr.args if self.kind(a) == DYNAMIC]
            rest = [a for a in expr.args if self.kind(a) != DYNAMIC]
            if rest:
                moving.append(self._symbol(expr.func(*rest)))
            return expr.func(*moving, evaluate=False)
        return expr.func(*[self.hoist(a) for a in expr.args])


def _simplified(expr: sympy.Expr) -> sympy.Expr:
    """A constant expression with common factors cancelled (``0.01*dt/(dt*tau)`` ->
    ``0.01/tau``), or as it is where sympy cannot."""
    try:
        simpler = sympy.cancel(expr)
    except (sympy.PolynomialError, TypeError, ValueError):
        return expr
    return simpler if sympy.count_ops(simpler) <= sympy.count_ops(expr) else expr


def _terms(expr: sympy.Expr) -> list[sympy.Expr]:
    """The terms of ``expr`` with products distributed over sums (not inside function
    arguments or powers): ``a*(b + c)`` -> ``[a*b, a*c]``."""
    if isinstance(expr, sympy.Add):
        return [t for arg in expr.args for t in _terms(arg)]
    if isinstance(expr, sympy.Mul):
        products = [sympy.Integer(1)]
        for factor in expr.args:
            products = [p * t for p in products for t in _terms(factor)]
        return products
    return [expr]


def _function_class(name: str, derivative) -> type:
    """A sympy function named ``name`` (so `compile_expression` finds the same torch
    implementation) whose derivative is ``derivative(*args)``: the Brian2 functions that
    sympy leaves underived, with autograd's convention at kinks (torch's clip passes half
    the gradient at a bound, abs none at 0)."""
    def fdiff(self, argindex=1):
        if argindex != 1:
            raise _NotFusable(f"'{name}' with bounds that change")
        return derivative(*self.args)
    return type(name, (sympy.Function,), {"fdiff": fdiff})


class _NotFusable(ValueError):
    """A model construct the fused loop does not differentiate."""


_CLIP_SLOPE = sympy.Function("clip_slope")
_DIFFERENTIABLE = {
    "clip": _function_class("clip", lambda u, low, high: _CLIP_SLOPE(u, low, high)),
    "sqrt": _function_class("sqrt", lambda u: 1 / (2 * sympy.sqrt(u))),
    # piecewise constant: autograd gives 0, whatever the argument (a comparison too)
    **{name: type(name, (sympy.Function,),
                  {"_eval_derivative": lambda self, s: sympy.Integer(0)})
       for name in ("floor", "ceiling", "int_", "sign")},
}


def _clip_slope(u, low, high):
    """d clip(u, low, high) / du as torch's autograd of ``minimum(maximum(u, low),
    high)`` gives it: 1 inside, 1/2 at a bound, 0 outside."""
    if not torch.is_tensor(low) and not torch.is_tensor(high):
        half = u.new_tensor(0.5)
        if high == math.inf:  # 1 above, 1/2 at, 0 below the bound: one kernel
            return torch.heaviside(u - low if low else u, half)
        if low == -math.inf:
            return torch.heaviside(high - u, half)
    return ((u > low).to(u.dtype) + (u >= low).to(u.dtype)) * \
        ((u < high).to(u.dtype) + (u <= high).to(u.dtype)) / 4


def _clamping(clip):
    """``clip(u, low, high)`` in one clamp kernel when the bounds are numbers (the same
    values as ``clip``, the eager minimum(maximum(...)), used for tensor bounds); the fused
    loop takes its derivative from `_clip_slope`."""
    def clamp(u, low, high):
        if torch.is_tensor(low) or torch.is_tensor(high):
            return clip(u, low, high)
        return torch.clamp(u, None if low == -math.inf else low,
                           None if high == math.inf else high)
    return clamp


def _with_derivatives(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with the functions sympy cannot differentiate replaced by equal ones that
    it can (`_DIFFERENTIABLE`)."""
    def replace(node):
        if isinstance(node, sympy.Function) and type(node).__name__ == "exprel":
            raise _NotFusable("'exprel' has a removable singularity at 0 whose derivative "
                              "the fused loop does not write out")
        if isinstance(node, sympy.Function) and type(node).__name__ in _DIFFERENTIABLE:
            return _DIFFERENTIABLE[type(node).__name__](*[replace(a) for a in node.args])
        if node.args and not node.is_Atom:
            return node.func(*[replace(a) for a in node.args])
        return node
    return replace(expr)


class FusedPlan:
    """What `fused_run` evaluates for one `TorchStepper` (built once per stepper).

    Per step: ``calls`` (function calls on the state, saved for the backward pass), the
    recurrent ``source`` values, coupling targets, more ``calls`` and the ``update`` of
    every state, all in terms of states, targets, calls and ``hoisted`` symbols.
    Backward: ``derivative_forms[(state, leaf)]`` = d update / d leaf (leaf: a state at
    the step's start, a recurrent target or a hoisted value) and
    ``source_derivative_forms[(coupling, leaf)]`` (sympy), evaluated over the saved values
    by ``derivative_program`` (common subexpressions once, then every form in that order);
    ``derivatives`` holds a closure per update derivative. ``problem`` says why a model
    cannot be fused (None if it can).
    """

    def __init__(self, stepper):
        model = stepper.model
        self.states = list(model.state_names)
        self.recurrent = [c for c in model.couplings.values() if c.source != INPUT_SOURCE]
        self.inputs = [c for c in model.couplings.values() if c.source == INPUT_SOURCE]
        self.problem = None
        try:
            self._build(stepper)
        except (_NotFusable, UnsupportedExpression) as error:
            self.problem = str(error)

    def _build(self, stepper):
        model = stepper.model
        held, plain = stepper.held_forms, model.subexpressions

        def expanded(expr):  # held and plain subexpressions written out
            for _ in range(len(held) + 1):
                inner = {s for s in expr.free_symbols if s.name in held or s.name in plain}
                if not inner:
                    break
                expr = expr.xreplace({s: held.get(s.name, plain.get(s.name)) for s in inner})
            return _with_derivatives(expr)

        targets = {c.target for c in model.couplings.values()}
        recurrent_targets = {c.target for c in self.recurrent}
        stream = {"t", *stepper.random_symbol_names, *(c.target for c in self.inputs)}
        dynamic = {*self.states, *recurrent_targets}
        hoisting = Hoisting(dynamic, stream)
        sources = {}
        for coupling in self.recurrent:
            name = coupling.source
            form = _symbol(name) if name in model.state_names else \
                hoisting.hoist(expanded(held.get(name, plain.get(name))))
            if {s.name for s in form.free_symbols} & targets:
                raise _NotFusable(f"the source of coupling '{coupling.name}' depends on a "
                                  "coupling target")
            sources[coupling.name] = form
        updates = {n: hoisting.linear(expanded(stepper.update_forms[n])) for n in self.states}
        # a target that enters only as ``target + h`` (h hoisted) is computed as
        # ``h + source @ W^T`` in one kernel, and stands for that sum from here on
        self.added = {}  # coupling -> name of the hoisted value added to its target
        for coupling in self.recurrent:
            target = _symbol(coupling.target)
            sums = {node for form in updates.values()
                    for node in sympy.preorder_traversal(form)
                    if isinstance(node, sympy.Add) and target in node.args}
            partners = {a for node in sums for a in node.args if a != target}
            if len(sums) != 1 or len(partners) != 1 or len(next(iter(sums)).args) != 2 or \
                    next(iter(partners)).name not in hoisting.hoisted:
                continue
            (whole,) = sums
            if any(target in f.xreplace({whole: sympy.Dummy()}).free_symbols
                   for f in updates.values()):
                continue  # the target also enters elsewhere
            updates = {n: f.xreplace({whole: target}) for n, f in updates.items()}
            self.added[coupling.name] = next(iter(partners)).name

        # function calls on the state: computed once per step and saved
        calls: dict[sympy.Expr, sympy.Symbol] = {}

        def capture(expr):
            for node in sympy.postorder_traversal(expr):
                if isinstance(node, sympy.Function) and node not in calls and \
                        {s.name for s in node.free_symbols} & dynamic:
                    calls[node] = sympy.Symbol(f"_call{len(calls)}", real=True)
        for form in [*sources.values(), *updates.values()]:
            capture(form)

        def saved(expr):  # calls replaced by their saved values, innermost first
            return expr.xreplace(calls) if calls else expr
        self.functions = {**stepper.functions, "clip_slope": _clip_slope}
        compiled = self.compiled
        # the loop runs without autograd: clip with number bounds is one clamp kernel
        in_loop = {**self.functions, "clip": _clamping(self.functions["clip"])}
        self.calls = []  # (name, closure, whether it needs the targets), in order
        for node, symbol in calls.items():  # post-order: inner calls come first
            inner = node.func(*[saved(a) for a in node.args])
            self.calls.append((symbol.name, compile_expression(inner, in_loop),
                               bool({s.name for s in node.free_symbols} & recurrent_targets)))
        self.source = {c: compile_expression(saved(form), in_loop)
                       for c, form in sources.items()}
        self.source_is_state = {c.name: (sources[c.name] == _symbol(c.source) and c.source)
                                for c in self.recurrent}
        self.update = {n: _compile_sum(saved(form), in_loop) for n, form in updates.items()}
        self.hoisted = {name: (kind, compiled(expr))
                        for name, (kind, expr) in hoisting.hoisted.items()}

        leaves = [*self.states, *recurrent_targets, *hoisting.hoisted]
        self.hoisted_forms = dict(hoisting.hoisted)
        self.derivative_forms: dict[tuple[str, str], sympy.Expr] = {}
        for name, form in updates.items():
            for leaf in leaves:
                derivative = _derivative(form, leaf)
                if derivative != 0:
                    self.derivative_forms[(name, leaf)] = self._checked(saved(derivative),
                                                                        name)
        self.source_derivative_forms: dict[tuple[str, str], sympy.Expr] = {}
        for coupling, form in sources.items():
            if self.source_is_state[coupling]:
                continue
            for leaf in [*self.states, *hoisting.hoisted]:
                derivative = _derivative(form, leaf)
                if derivative != 0:
                    self.source_derivative_forms[(coupling, leaf)] = self._checked(
                        saved(derivative), coupling)
        self.derivatives = {key: compiled(form) for key, form in self.derivative_forms.items()}
        # for the backward pass: all derivatives at once, common subexpressions (a clip's
        # slope shared by two derivatives) evaluated once
        forms = [*self.derivative_forms.values(), *self.source_derivative_forms.values()]
        common, reduced = sympy.cse(forms, symbols=sympy.numbered_symbols("_common"))
        self.derivative_program = (
            [(symbol.name, compiled(form)) for symbol, form in common],
            [compiled(form) for form in reduced])

    def compiled(self, expr: sympy.Expr):
        """A closure of ``expr``, a form over this plan's symbols (derivatives included)."""
        return compile_expression(expr, self.functions)

    @classmethod
    def derivative(cls, form: sympy.Expr, leaf: str) -> sympy.Expr:
        """d form / d leaf by sympy; a `ValueError` where sympy cannot write it out."""
        return cls._checked(_derivative(form, leaf), leaf)

    @staticmethod
    def _checked(derivative: sympy.Expr, name: str) -> sympy.Expr:
        if derivative.has(sympy.Derivative, sympy.Subs, sympy.DiracDelta):
            raise _NotFusable(f"the update of '{name}' has a derivative sympy does not "
                              "write out")
        return derivative


def _compile_sum(expr: sympy.Expr, functions):
    """A closure for a state update ``sum_i c_i * d_i`` (`Hoisting.linear`) that
    accumulates the terms in place (``addcmul_``): one kernel per term. For the loop
    without autograd only (the sum is written into a fresh tensor)."""
    if not isinstance(expr, sympy.Add):
        return compile_expression(expr, functions)
    products, others = [], []
    for term in expr.args:
        factors = sympy.Mul.make_args(term)
        if len(factors) == 2 and not term.is_Number:
            products.append(tuple(compile_expression(f, functions) for f in factors))
        else:
            others.append(compile_expression(term, functions))
    if not products:
        return compile_expression(expr, functions)

    def update(env):
        first, second = products[0]
        total = torch.mul(first(env), second(env))
        for a, b in products[1:]:
            a, b = a(env), b(env)
            if torch.is_tensor(a) and torch.is_tensor(b):
                total.addcmul_(a, b)
            else:
                total.add_(a * b)
        for other in others:
            total.add_(other(env))
        return total
    return update


def _derivative(form: sympy.Expr, leaf: str) -> sympy.Expr:
    """d form / d leaf by sympy; `_NotFusable` where sympy cannot take it."""
    try:
        return sympy.diff(form, _symbol(leaf))
    except (AttributeError, TypeError, ValueError, NotImplementedError) as error:
        raise _NotFusable(f"no derivative of '{form}' by '{leaf}' ({error})") from None


def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


#: plans by what determines them (`Model.structure_key`, the noise setting, dtype, device):
#: a model loaded again, or simulated again, reuses its plan (the sympy work takes tens of ms)
_PLANS: dict[tuple, FusedPlan] = {}
PLANS_KEPT = 64


def plan_for(stepper) -> FusedPlan:
    """The `FusedPlan` of ``stepper``'s model, noise setting, dtype and device (cached)."""
    key = (stepper.model.structure_key(), stepper.noise, stepper.dtype, str(stepper.device))
    if key not in _PLANS:
        if len(_PLANS) >= PLANS_KEPT:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = FusedPlan(stepper)
    return _PLANS[key]


def _time_first(value: torch.Tensor) -> torch.Tensor:
    """``([member,] trial, time, x)`` -> ``(time, member or 1, trial, x)``."""
    value = value.movedim(-2, 0)
    return value if value.dim() == 4 else value.unsqueeze(1)


def fused_run(stepper, bound: Mapping[str, torch.Tensor], inputs: torch.Tensor,
              state: Mapping[str, torch.Tensor], names, generator=None,
              truncation: int | None = None, progress: bool = False,
              detach_recurrent: bool = False,
              perturbations: Mapping[str, torch.Tensor] | None = None):
    """`TorchStepper.run` by the fused loop: the same arguments and results."""
    plan = stepper.fused_plan
    model = stepper.model
    n_steps = inputs.shape[-2]
    shape = next(iter(state.values())).shape
    random = stepper.random_blocks(shape, n_steps, generator)
    perturbations = {k: _time_first(v) for k, v in (perturbations or {}).items()}
    dtype, device = stepper.dtype, stepper.device
    times = torch.arange(n_steps, dtype=dtype, device=device) * model.dt
    # the step-free environment, for all steps at once: (time, member, trial, unit)
    stream = dict(bound)
    stream.update(random)
    stream["t"], stream["dt"] = times[:, None, None, None], model.dt
    stream.update(stepper.held_constants)
    inputs_by_time = _time_first(inputs)
    for coupling in plan.inputs:
        value = torch.matmul(inputs_by_time, bound[coupling.name].transpose(-1, -2))
        if coupling.target in perturbations:
            value = value + perturbations[coupling.target]
        stream[coupling.target] = value
    constants, blocks = {}, {}
    for name, (kind, function) in plan.hoisted.items():  # in order of dependence
        value = stream[name] = function(stream)
        if kind == INVARIANT:
            constants[name] = value
        else:
            blocks[name] = value  # (time, member or 1, trial or 1, unit or 1)
    recurrent_weights = [bound[c.name] for c in plan.recurrent]
    recurrent_perturbations = [perturbations.get(c.target) for c in plan.recurrent]
    options = dict(plan=plan, n_steps=n_steps, truncation=truncation, progress=progress,
                   detach_recurrent=detach_recurrent,
                   perturbations=recurrent_perturbations,
                   constant_names=list(constants), block_names=list(blocks))
    tensors = [*(state[n] for n in plan.states), *recurrent_weights,
               *(torch.as_tensor(v, dtype=dtype, device=device) for v in constants.values()),
               *blocks.values()]
    paths = dict(zip(plan.states, _FusedLoop.apply(options, *tensors)))
    # (time + 1, member, trial, unit): the initial state, then the end of every step
    final = {n: paths[n][-1] for n in plan.states}
    recorded = _record(stepper, plan, names, paths, stream, bound, recurrent_perturbations,
                       shape, truncation, detach_recurrent)
    return recorded, final


def _record(stepper, plan: FusedPlan, names, paths, stream, bound, recurrent_perturbations,
            shape, truncation, detach_recurrent) -> dict[str, torch.Tensor]:
    """The values of ``names`` at the end of every step, as the eager loop's `observe`
    gives them, ``(member, trial, time, unit)``; computed for all steps at once."""
    values = {}
    after = None
    n_steps = next(iter(paths.values())).shape[0] - 1
    for name in names:
        if name in paths:
            value = paths[name][1:]
        else:
            if after is None:
                after = _step_environments(stepper, plan, paths, stream, bound,
                                           recurrent_perturbations, truncation,
                                           detach_recurrent)
            value = stepper.value(name, after, None)
        full = (n_steps, *shape)
        if not torch.is_tensor(value) or tuple(value.shape) != full:
            value = torch.broadcast_to(torch.as_tensor(value, dtype=stepper.dtype,
                                                       device=stepper.device), full)
        values[name] = value.movedim(0, 2)
    return values


def _step_environments(stepper, plan, paths, stream, bound, recurrent_perturbations,
                       truncation, detach_recurrent) -> dict[str, Any]:
    """Every step's environment (held values and coupling targets from the state at its
    start) updated with the states at its end, stacked over time; cut from the graph where
    the eager loop cuts it."""
    env = dict(stream)
    n_steps = next(iter(paths.values())).shape[0] - 1
    cut = None
    if truncation:
        steps = torch.arange(n_steps, device=stepper.device)
        cut = ((steps % truncation == 0) & (steps > 0))[:, None, None, None]
    for name in plan.states:
        start = paths[name][:-1]
        env[name] = start if cut is None else torch.where(cut, start.detach(), start)
    for name, function in stepper.held:
        env[name] = function(env)
    for coupling, perturbation in zip(plan.recurrent, recurrent_perturbations):
        source = stepper.value(coupling.source, env, None)
        if detach_recurrent:
            source = source.detach()
        target = torch.matmul(source, bound[coupling.name].transpose(-1, -2))
        env[coupling.target] = target if perturbation is None else target + perturbation
    env.update({name: path[1:] for name, path in paths.items()})
    return env


class _FusedLoop(torch.autograd.Function):
    """The paths of the states, ``(time + 1, member, trial, unit)`` each (the initial
    state, then the end of every step), from initial states, recurrent weights and
    hoisted values."""

    @staticmethod
    def forward(ctx, options, *tensors):
        plan: FusedPlan = options["plan"]
        n_states, n_couplings = len(plan.states), len(plan.recurrent)
        n_constants = len(options["constant_names"])
        initial = dict(zip(plan.states, tensors[:n_states]))
        weights = tensors[n_states:n_states + n_couplings]
        rest = tensors[n_states + n_couplings:]
        constants = dict(zip(options["constant_names"], rest[:n_constants]))
        blocks = dict(zip(options["block_names"], rest[n_constants:]))
        transposed = [w.transpose(-1, -2) for w in weights]
        early = [(n, f) for n, f, needs_targets in plan.calls if not needs_targets]
        late = [(n, f) for n, f, needs_targets in plan.calls if needs_targets]
        saved_sources = [c.name for c in plan.recurrent if not plan.source_is_state[c.name]]
        state = initial
        paths = {n: [initial[n]] for n in plan.states}
        kept = {name: [] for name in [*(n for n, *_ in plan.calls), *saved_sources,
                                      *(c.target for c in plan.recurrent)]}
        for k in tqdm(range(options["n_steps"]), desc="steps", unit="step", leave=False,
                      disable=not options["progress"], mininterval=0.5):
            env = dict(constants)
            env.update(state)
            for name, block in blocks.items():
                env[name] = block[k]
            for name, function in early:
                env[name] = function(env)
            for coupling, weight, perturbation in zip(plan.recurrent, transposed,
                                                      options["perturbations"]):
                source = plan.source[coupling.name](env)
                if coupling.name in kept:
                    kept[coupling.name].append(source)
                added = plan.added.get(coupling.name)
                target = torch.matmul(source, weight) if added is None else \
                    torch.baddbmm(env[added], source, weight)
                if perturbation is not None:
                    target = target + perturbation[k]
                env[coupling.target] = target
            for name, function in late:
                env[name] = function(env)
            state = {n: plan.update[n](env) for n in plan.states}
            for name in plan.states:
                paths[name].append(state[name])
            for name, values in kept.items():
                if name in env:
                    values.append(env[name])
        paths = {n: torch.stack(v) for n, v in paths.items()}
        if any(ctx.needs_input_grad[1:]):
            ctx.options = options
            ctx.sizes = (n_states, n_couplings, len(tensors), list(kept))
            ctx.save_for_backward(*tensors, *paths.values(),
                                  *(torch.stack(v) for v in kept.values()))
        return tuple(paths.values())

    @staticmethod
    def backward(ctx, *path_grads):
        options = ctx.options
        plan: FusedPlan = options["plan"]
        n_states, n_couplings, n_inputs, kept_names = ctx.sizes
        saved = ctx.saved_tensors
        inputs = saved[:n_inputs]
        paths = dict(zip(plan.states, saved[n_inputs:n_inputs + n_states]))
        kept = dict(zip(kept_names, saved[n_inputs + n_states:]))
        initial = inputs[:n_states]
        weights = inputs[n_states:n_states + n_couplings]
        constant_names, block_names = options["constant_names"], options["block_names"]
        hoisted = dict(zip(constant_names + block_names, inputs[n_states + n_couplings:]))
        derivatives = _step_derivatives(
            plan, {n: hoisted[n] for n in constant_names},
            {**{n: hoisted[n] for n in block_names}, **kept, **paths})
        hoisted_grads = _HoistedGradients(plan, hoisted, set(block_names), weights,
                                          options["detach_recurrent"])
        adjoints, deltas, first = _adjoint(plan, options, path_grads, paths, derivatives,
                                           weights, hoisted_grads.add_step)
        sources = {c.name: kept[c.name] if c.name in kept else
                   paths[plan.source_is_state[c.name]][:-1] for c in plan.recurrent}
        weight_grads = [_weight_gradient(deltas[c.name], sources[c.name])
                        for c in plan.recurrent]
        initial_grads = [_reduce_to(first[n], init) for n, init in zip(plan.states, initial)]
        return (None, *initial_grads, *weight_grads, *hoisted_grads.result(deltas))


def _step_derivatives(plan: FusedPlan, constants: dict, by_step: dict):
    """A function of the step k giving ``(local, source_local)``: the update derivatives
    (`FusedPlan.derivative_forms`) and the computed sources' (`source_derivative_forms`)
    at step k, from the ``constants`` and the values ``by_step`` (``(time, ...)`` each:
    hoisted blocks, saved calls and targets, and the state paths, whose entry k is the
    state at the start of step k). Evaluated one step at a time, in the backward loop:
    each step's values stay in cache and no ``(time, member, trial, unit)`` block is
    allocated per derivative."""
    common, reduced = plan.derivative_program
    n_local = len(plan.derivative_forms)
    like = next(iter(by_step.values()))
    numbers: dict[int, torch.Tensor] = {}  # derivatives that are numbers, as tensors once

    def at(k: int):
        env = dict(constants)
        env.update({name: value[k] for name, value in by_step.items()})
        for name, function in common:
            env[name] = function(env)
        values = []
        for index, function in enumerate(reduced):
            value = function(env)
            if not torch.is_tensor(value):
                value = numbers.setdefault(index, like.new_tensor(value))
            values.append(value)
        return (dict(zip(plan.derivative_forms, values)),
                dict(zip(plan.source_derivative_forms, values[n_local:])))
    return at


class _HoistedGradients:
    """What each hoisted value receives: the sum over states of ``adjoint * d update /
    d value`` (a coupling's delta where the two derivatives are equal, e.g. a value
    added to the coupling's target), plus its part in the computed recurrent sources.
    `add_step` accumulates step k's products (a ``(time, ...)`` block for values that
    change from step to step, a sum over steps for constants); `result` gives the
    gradients in the order of ``hoisted``."""

    def __init__(self, plan: FusedPlan, hoisted: dict, block_names: set, weights,
                 detached: bool):
        self.plan, self.hoisted, self.weights = plan, hoisted, weights
        forms = plan.derivative_forms

        def key(leaf):
            return tuple(sorted((n, forms[(n, leaf)]) for n in plan.states
                                if (n, leaf) in forms))
        target_keys = {key(c.target): c.name for c in plan.recurrent}
        self.keys = {}  # value -> key of its own products (a delta's where equal)
        self.products = {}  # key -> (leaf with that key, whether kept per step)
        self.sources = {}  # value -> couplings whose computed source depends on it
        for name, value in hoisted.items():
            if not value.requires_grad:
                continue
            own = key(name)
            if own:
                self.keys[name] = own
                if own not in target_keys:
                    leaf, per_step = self.products.get(own, (name, False))
                    self.products[own] = (leaf, per_step or name in block_names)
            if not detached:
                self.sources[name] = [(i, c) for i, c in enumerate(plan.recurrent)
                                      if (c.name, name) in plan.source_derivative_forms]
        self.target_keys = target_keys
        self.totals: dict = {}  # key or ("source", value) -> block or sum over steps
        self.block_names = block_names

    def _add(self, slot, per_step: bool, k: int, n_steps: int, a, b, first: bool):
        total = self.totals.get(slot)
        if total is None:
            shape = torch.broadcast_shapes(a.shape, b.shape)
            total = self.totals[slot] = a.new_zeros((n_steps, *shape) if per_step else shape)
        out = total[k] if per_step else total
        if per_step and first:
            torch.mul(a, b, out=out)
        else:
            out.addcmul_(a, b)

    def add_step(self, k: int, local, source_local, adjoints, deltas) -> None:
        n_steps = next(iter(adjoints.values())).shape[0]
        for own, (leaf, per_step) in self.products.items():
            for index, (n, _) in enumerate(own):
                self._add(own, per_step, k, n_steps, adjoints[n][k], local[(n, leaf)],
                          index == 0)
        for name, couplings in self.sources.items():
            per_step = name in self.block_names
            for index, (i, coupling) in enumerate(couplings):
                back = torch.matmul(deltas[coupling.name][k], self.weights[i])
                self._add(("source", name), per_step, k, n_steps, back,
                          source_local[(coupling.name, name)], index == 0)

    def result(self, deltas) -> list:
        grads = []
        for name, value in self.hoisted.items():
            terms = []
            own = self.keys.get(name)
            if own is not None:
                terms.append(deltas[self.target_keys[own]] if own in self.target_keys
                             else self.totals.get(own))
            terms += [deltas[c.name] for c in self.plan.recurrent
                      if self.plan.added.get(c.name) == name]  # added in the same kernel
            terms.append(self.totals.get(("source", name)))
            terms = [_reduce_to(t, value) for t in terms if t is not None]
            grads.append(sum(terms[1:], terms[0]) if terms else None)
        return grads


def _adjoint(plan: FusedPlan, options, path_grads, paths, derivatives, weights, on_step):
    """Backpropagation through the steps, from the last: ``(adjoints, deltas, first)``
    with ``adjoints[state]`` = dL/d(state at the end of step k) and ``deltas[coupling]``
    = dL/d(target during step k), both ``(time, member, trial, unit)``, and ``first`` =
    dL/d(initial state). ``derivatives(k)`` gives step k's local derivatives
    (`_step_derivatives`); ``on_step(k, local, source_local, adjoints, deltas)`` is called
    once step k's deltas are known. Per step and state: one product with the weights (with
    the direct gradient added in the same kernel) and one multiply-add per local factor."""
    first_path = paths[plan.states[0]]
    n_steps = first_path.shape[0] - 1
    given = dict(zip(plan.states, path_grads))
    adjoints = {n: torch.empty_like(paths[n][1:]) for n in plan.states}
    first = {n: torch.empty_like(paths[n][0]) for n in plan.states}
    for n in plan.states:
        if given[n] is None:
            adjoints[n][-1].zero_()
        else:
            adjoints[n][-1].copy_(given[n][-1])
    deltas = {c.name: first_path.new_empty(first_path.shape[:-1] + (w.shape[-2],))[1:]
              for c, w in zip(plan.recurrent, weights)}
    cut, detached = options["truncation"], options["detach_recurrent"]
    for k in range(n_steps - 1, -1, -1):
        local, source_local = derivatives(k)
        for coupling in plan.recurrent:
            delta = deltas[coupling.name][k]
            factors = [(adjoints[n][k], local[(n, coupling.target)])
                       for n in plan.states if (n, coupling.target) in local]
            if not factors:
                delta.zero_()
            for index, (adjoint, d) in enumerate(factors):
                if index == 0:
                    torch.mul(adjoint, d, out=delta)
                else:
                    delta.addcmul_(adjoint, d)
        on_step(k, local, source_local, adjoints, deltas)
        for s2 in plan.states:
            out = adjoints[s2][k - 1] if k else first[s2]
            # dL/d(state at the start of step k): its direct gradient plus what flows back
            # through step k; the first kernel writing ``out`` also adds the direct part
            direct = given[s2][k] if given[s2] is not None else None
            written = False
            terms = [] if cut and k and k % cut == 0 else \
                _step_terms(plan, s2, k, adjoints, deltas, local, source_local, weights,
                            detached)
            for kind, a, b in terms:
                accumulate, add_to, product = _KERNELS[kind]
                if written:
                    accumulate(out, a, b)
                elif direct is not None:
                    add_to(direct, a, b, out=out)
                else:
                    product(a, b, out=out)
                written = True
            if not written:
                out.copy_(direct) if direct is not None else out.zero_()
    return adjoints, deltas, first


#: per kind of term: (out += a . b in place, c + a . b into out, a . b into out)
_KERNELS = {"matmul": (torch.Tensor.baddbmm_, torch.baddbmm, torch.bmm),
            "multiply": (torch.Tensor.addcmul_, torch.addcmul, torch.mul)}


def _step_terms(plan: FusedPlan, state: str, k: int, adjoints, deltas, local, source_local,
                weights, detached: bool) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """What flows back through step k to ``state`` at its start: ``("matmul", delta,
    W)`` for a coupling whose source is the state, ``("multiply", a, b)`` for local
    factors (``adjoint * d update/d state``, step k's) and sources computed from the
    state."""
    terms = []
    for coupling, weight in zip(plan.recurrent, weights):
        if detached:
            break
        own = plan.source_is_state[coupling.name]
        if own == state:
            terms.append(("matmul", deltas[coupling.name][k], weight))
        elif not own and (coupling.name, state) in source_local:
            back = torch.bmm(deltas[coupling.name][k], weight)
            terms.append(("multiply", back, source_local[(coupling.name, state)]))
    for n in plan.states:
        if (n, state) in local:
            terms.append(("multiply", adjoints[n][k], local[(n, state)]))
    return terms


def _weight_gradient(delta: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``sum over steps and trials of delta^T source`` per member: ``(member, unit,
    presynaptic)`` from ``(time, member, trial, unit)`` and ``(..., presynaptic)``."""
    source = source.expand(*delta.shape[:-1], source.shape[-1])
    if delta.shape[1] == 1:  # one network: one matrix product, no copies
        return torch.mm(delta.reshape(-1, delta.shape[-1]).t(),
                        source.reshape(-1, source.shape[-1])).unsqueeze(0)
    # members: one batched product per step (no copy of the whole trajectory)
    total = torch.bmm(delta[0].transpose(1, 2), source[0])
    for k in range(1, delta.shape[0]):
        total.baddbmm_(delta[k].transpose(1, 2), source[k])
    return total


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``grad`` summed over the axes along which ``like`` was broadcast."""
    if grad.shape == like.shape:
        return grad
    while grad.dim() > like.dim():
        grad = grad.sum(0)
    axes = [i for i, (g, l) in enumerate(zip(grad.shape, like.shape)) if l == 1 and g != 1]
    return grad.sum(axes, keepdim=True) if axes else grad
