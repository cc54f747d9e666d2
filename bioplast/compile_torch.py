"""Model equations compiled into one torch step over tensors shaped ``(member, trial, unit)``.

`TorchStepper` turns the sympy forms of a `Model` into closures over torch operations (no
generated source, no ``eval``). One call of `TorchStepper.step` advances every state by
one ``dt`` with the model's method:

- ``euler``: ``x + dt*f`` (plus ``sqrt(dt)*g*xi`` for white noise: Euler-Maruyama), as
  Brian2's ``euler`` state updater;
- ``exponential_euler``: for ``dx/dt = A*x + B``, ``(x + B/A)*exp(A*dt) - B/A``, as Brian2's
  ``exponential_euler``.

The order within a step follows Brian2's schedule: ``(constant over dt)`` subexpressions
(and their random numbers) from the state at the start of the step, then coupling targets
``target = W @ source`` from the same state, then the state update. The caller owns the
time loop (diffrax style), so training code can use the same step with autograd.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import sympy
import torch
from tqdm.auto import tqdm

from . import schema
from .expressions import compile_expression
from .model import INPUT_SOURCE, RANDOM_MEANS, Model, linear_coefficients
from .online import online_steps


def torch_functions(dtype: torch.dtype, device: torch.device) -> dict[str, Callable]:
    """Implementations of the model functions (Brian2 names) on tensors of ``dtype``."""

    def tensor(x):
        return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=dtype,
                                                                      device=device)

    def unary(function):
        return lambda x: function(tensor(x))

    def clip(x, low, high):
        return torch.minimum(torch.maximum(tensor(x), tensor(low)), tensor(high))

    def exprel(x):
        x = tensor(x)
        return torch.where(x == 0, torch.ones_like(x), torch.expm1(x) / torch.where(
            x == 0, torch.ones_like(x), x))

    table = {
        "abs": torch.abs, "arccos": torch.acos, "arcsin": torch.asin, "arctan": torch.atan,
        "ceil": torch.ceil, "cos": torch.cos, "cosh": torch.cosh, "exp": torch.exp,
        "expm1": torch.expm1, "floor": torch.floor, "log": torch.log, "log10": torch.log10,
        "log1p": torch.log1p, "sign": torch.sign, "sin": torch.sin, "sinh": torch.sinh,
        "sqrt": torch.sqrt, "tan": torch.tan, "tanh": torch.tanh,
    }
    table = {name: unary(function) for name, function in table.items()}
    table.update({"clip": clip, "exprel": exprel,
                  "int": lambda x: torch.trunc(tensor(x).to(dtype))})  # C cast: toward 0
    return table


#: how `TorchStepper.run` steps: ``fused`` (`bioplast.fused_loop`) or ``eager`` (one
#: closure call per step, autograd records every operation)
ENGINES = ("fused", "eager")

READOUT_ACTIVATIONS = {"identity": lambda y: y, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def draw_steps(sample: Callable, n_steps: int, shape, generator, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """Random numbers for ``n_steps`` steps at once, ``(step, member, ...)``: one call per
    member (its own generator) or one call in all."""
    if isinstance(generator, (list, tuple)):  # each member's block drawn in place
        blocks = torch.empty((len(generator), n_steps, *shape[1:]), dtype=dtype, device=device)
        for block, g in zip(blocks, generator):
            sample((n_steps, *shape[1:]), generator=g, dtype=dtype, device=device, out=block)
        return blocks.transpose(0, 1)
    return sample((n_steps, *shape), generator=generator, dtype=dtype, device=device)


def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


def update_expression(model: Model, name: str, noise: bool) -> sympy.Expr:
    """sympy expression of ``x(t + dt)`` for state ``name``; xi samples are symbols
    ``_xi_<xi name>`` of standard normal numbers."""
    x, dt = _symbol(name), _symbol("dt")
    drift = model.drift[name]
    if model.method == "exponential_euler":
        A, B = linear_coefficients(drift, name)
        if A == 0:
            return x + dt * B
        if B == 0:
            return x * sympy.exp(A * dt)
        ratio = B / A
        return (x + ratio) * sympy.exp(A * dt) - ratio
    update = x + dt * drift
    if noise:
        for xi, coefficient in model.diffusion[name].items():
            update = update + sympy.sqrt(dt) * coefficient * _symbol(f"_xi_{xi}")
    return update


class TorchStepper:
    """One integration step of ``model`` on torch tensors.

    Parameters
    ----------
    model : Model
    dtype : torch.dtype
        Floating point type of states and parameters.
    device : str or torch.device
    noise : bool
        With ``False``, ``rand()``/``randn()`` take their means (0.5 and 0) and white noise
        ``xi`` is dropped.

    Tensors: states ``(member, trial, unit)``; parameters as returned by `bind`; inputs at
    one step ``(trial, input)`` or ``(member, trial, input)``. Units are SI (seconds).
    """

    def __init__(self, model: Model, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", noise: bool = True,
                 engine: str = "fused"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.model = model
        self.dtype = dtype
        self.device = torch.device(device)
        self.noise = noise
        self.engine = engine
        self.functions = torch_functions(dtype, self.device)
        silence = {} if noise else {_symbol(s): RANDOM_MEANS[f]
                                    for s, f in model.random_symbols.items()}
        self.random = list(model.random_symbols.items()) if noise else []
        self.white_noise = sorted({xi for terms in model.diffusion.values() for xi in terms}) \
            if noise else []
        held = {n: e.xreplace(silence) for n, e in model.step_subexpressions.items()}
        # held values that are numbers once the noise is off (noise = sigma * 0) are
        # substituted, so that the step does not add a zero at every step
        constants = {_symbol(n): e for n, e in held.items() if e.is_Number}
        #: sympy forms: held subexpressions that are not numbers, and the state updates
        self.held_forms = {n: e for n, e in held.items() if not e.is_Number}
        self.update_forms = {n: update_expression(model, n, noise).xreplace(silence)
                             .xreplace(constants) for n in model.state_names}
        self.held = [(n, self._compile(e)) for n, e in self.held_forms.items()]
        self.held_constants = {n: float(e) for n, e in held.items() if e.is_Number}
        self.update = {n: self._compile(e) for n, e in self.update_forms.items()}
        self.plain = {n: self._compile(e) for n, e in model.subexpressions.items()}
        self._fused_plan = None

    @property
    def random_symbol_names(self) -> list[str]:
        """Names of the random numbers a step draws (``rand()``/``randn()`` calls, white
        noise ``_xi_<name>``)."""
        return [s for s, _ in self.random] + [f"_xi_{xi}" for xi in self.white_noise]

    @property
    def fused_plan(self):
        """The fused loop's plan for this model (`bioplast.fused_loop.FusedPlan`), built
        once per model structure; its ``problem`` says why the model cannot be fused (None
        if it can)."""
        if self._fused_plan is None:
            from .fused_loop import plan_for
            self._fused_plan = plan_for(self)
        return self._fused_plan

    def _compile(self, expr):
        return compile_expression(expr, self.functions)

    # ------------------------------------------------------------------ parameters
    def bind(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Parameters shaped for broadcasting against ``(member, trial, unit)``.

        ``params`` hold a leading member axis: per-unit ``(member, unit)`` becomes
        ``(member, 1, unit)``, shared ``(member,)`` becomes ``(member, 1, 1)``; matrices
        ``(member, unit, presynaptic)`` stay as they are. Views only: gradients flow.
        """
        bound = {}
        for name, spec in self.model.params.items():
            value = params[name]
            if spec.dims == ():
                value = value[:, None, None]
            elif spec.dims == (schema.UNIT,):
                value = value[:, None, :]
            bound[name] = value
        return bound

    # ------------------------------------------------------------------ stepping
    def step(self, state: Mapping[str, torch.Tensor], inputs_t: torch.Tensor,
             bound: Mapping[str, torch.Tensor], t: float,
             generator: torch.Generator | None = None, detach_recurrent: bool = False,
             perturbations_t: Mapping[str, torch.Tensor] | None = None, random_t=None):
        """Advance every state by one step.

        Returns ``(new_state, env)``: ``env`` holds the values used during the step
        (coupling targets, ``(constant over dt)`` subexpressions), for `observe`.
        ``detach_recurrent`` cuts gradients through the sources of recurrent couplings
        (the credit that e-prop leaves out); ``perturbations_t`` adds a value per unit to
        coupling targets (node perturbation).
        """
        env = self.environment(state, inputs_t, bound, t, generator, detach_recurrent,
                               perturbations_t, random_t)
        return self.advance(env), env

    def random_blocks(self, shape, n_steps: int, generator) -> dict[str, torch.Tensor]:
        """The random numbers of ``n_steps`` steps from states shaped ``shape``, drawn at
        once (one call per variable, and per member with one generator per member):
        ``(step, *shape)`` per random symbol."""
        blocks = {symbol: draw_steps(torch.randn if function == "randn" else torch.rand,
                                     n_steps, shape, generator, self.dtype, self.device)
                  for symbol, function in self.random}
        blocks.update({f"_xi_{xi}": draw_steps(torch.randn, n_steps, shape, generator,
                                               self.dtype, self.device)
                       for xi in self.white_noise})
        return blocks

    def random_numbers(self, shape, n_steps: int, generator) -> list[dict[str, torch.Tensor]]:
        """`random_blocks` as one dict per step, for `environment`'s ``random_t``."""
        by_step = {name: block.unbind(0)
                   for name, block in self.random_blocks(shape, n_steps, generator).items()}
        return [{name: values[k] for name, values in by_step.items()} for k in range(n_steps)]

    def environment(self, state, inputs_t, bound, t: float, generator=None,
                    detach_recurrent: bool = False, perturbations_t=None,
                    random_t=None) -> dict[str, Any]:
        """Everything one step uses, from the state at its start: parameters, random
        numbers (``random_t`` from `random_numbers`, or drawn now), ``(constant over dt)``
        subexpressions and coupling targets."""
        env: dict[str, Any] = dict(bound)
        env.update(state)
        env["t"], env["dt"] = t, self.model.dt
        shape = next(iter(state.values())).shape
        if random_t is None:
            random_t = self.random_numbers(shape, 1, generator)[0]
        env.update(random_t)
        env.update(self.held_constants)
        for name, function in self.held:
            env[name] = function(env)
        for coupling in self.model.couplings.values():
            source = self.value(coupling.source, env, inputs_t)
            if detach_recurrent and coupling.source != INPUT_SOURCE:
                source = source.detach()
            env[coupling.target] = torch.matmul(source, bound[coupling.name].transpose(-1, -2))
            if perturbations_t is not None and coupling.target in perturbations_t:
                env[coupling.target] = env[coupling.target] + perturbations_t[coupling.target]
        return env

    def advance(self, env: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The states at the end of the step whose environment is ``env``."""
        return {name: update(env) for name, update in self.update.items()}

    def local_update(self, env: Mapping[str, Any], states, targets, params):
        """`advance` as a function of one unit's own values only (e-prop's view): the
        states at the start of the step, the coupling targets and the parameters (bound
        shapes) replace those in ``env``; ``(constant over dt)`` subexpressions follow the
        states; random numbers and everything else stay as in ``env``."""
        local = dict(env)
        local.update(params)
        local.update(states)
        for name, function in self.held:
            local[name] = function(local)
        local.update(targets)
        return self.advance(local)

    def run(self, bound: Mapping[str, torch.Tensor], inputs: torch.Tensor,
            state: Mapping[str, torch.Tensor], names, generator: torch.Generator | None = None,
            truncation: int | None = None, progress: bool = False,
            detach_recurrent: bool = False,
            perturbations: Mapping[str, torch.Tensor] | None = None):
        """Step through ``inputs`` ``([member,] trial, time, input)``.

        Returns ``(recorded, final_state)``: each of ``names`` stacked to
        ``(member, trial, time, unit)``. With ``truncation = k`` the states are detached
        from the graph every k steps (truncated BPTT). ``perturbations`` maps coupling
        targets to values ``([member,] trial, time, unit)`` added at every step; see
        `step` for ``detach_recurrent``. With ``engine="fused"`` (and a model the fused
        loop takes) the loop is `bioplast.fused_loop.fused_run`: same numbers, fewer
        kernels.
        """
        if self.engine == "fused" and self.fused_plan.problem is None:
            from .fused_loop import fused_run
            return fused_run(self, bound, inputs, state, names, generator, truncation,
                             progress, detach_recurrent, perturbations)
        steps = {name: [] for name in names}
        inputs_by_step = tqdm(inputs.unbind(-2), desc="steps", unit="step", leave=False,
                              disable=not progress, mininterval=0.5)
        by_step = {target: value.unbind(-2) for target, value in (perturbations or {}).items()}
        random = self.random_numbers(next(iter(state.values())).shape, inputs.shape[-2],
                                     generator)
        for k, inputs_t in enumerate(inputs_by_step):  # unbind: no O(T^2) backward
            if truncation and k and k % truncation == 0:
                state = {name: value.detach() for name, value in state.items()}
            state, env = self.step(state, inputs_t, bound, k * self.model.dt, generator,
                                   detach_recurrent,
                                   {target: values[k] for target, values in by_step.items()},
                                   random[k])
            for name, value in self.observe(state, env, names).items():
                steps[name].append(value)
        return {name: torch.stack(values, dim=2) for name, values in steps.items()}, state

    def online_steps(self, bound: Mapping[str, torch.Tensor], inputs: torch.Tensor,
                     state: Mapping[str, torch.Tensor], generator=None, parameters=()):
        """The online loop (`bioplast.online.online_steps`): one
        `bioplast.online.OnlineStep` per step of ``inputs`` ``([member,] trial, time,
        input)``, with the unit-local derivatives of the step (e-prop's traces); the
        parameters ``bound`` may change in place between steps. Random numbers as `run`
        draws them."""
        return online_steps(self, bound, inputs, state, generator, parameters)

    def value(self, name: str, env: Mapping[str, Any], inputs_t: torch.Tensor | None):
        """The value of a variable (or of the input, ``input``) in a step's ``env``."""
        if name == INPUT_SOURCE:
            return inputs_t
        if name in env:
            return env[name]
        return self.plain[name](env)

    def observe(self, new_state: Mapping[str, torch.Tensor], env: Mapping[str, Any],
                names) -> dict[str, torch.Tensor]:
        """Values of ``names`` at the end of a step (what Brian2 records with
        ``when='end'``): states and plain subexpressions from the new state, coupling
        targets and ``(constant over dt)`` subexpressions as held during the step."""
        after = dict(env)
        after.update(new_state)
        values = {}
        for name in names:
            value = self.value(name, after, None)
            if not isinstance(value, torch.Tensor) or value.shape != \
                    next(iter(new_state.values())).shape:
                value = torch.broadcast_to(torch.as_tensor(value, dtype=self.dtype,
                                                           device=self.device),
                                           next(iter(new_state.values())).shape)
            values[name] = value
        return values


def readout_pre_activation(model: Model, source: torch.Tensor,
                           params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``W_out @ source + b_out`` for ``source`` shaped ``(member, ..., unit)`` and
    parameters with a member axis; returns ``(member, ..., output)``."""
    weight = params[schema.READOUT_WEIGHT]
    y = torch.einsum("m...u,mou->m...o", source, weight)
    if model.readout.bias:
        bias = params[schema.READOUT_BIAS]
        y = y + bias.reshape(bias.shape[0], *([1] * (source.ndim - 2)), bias.shape[-1])
    return y


def readout(model: Model, source: torch.Tensor, params: Mapping[str, torch.Tensor]):
    """``activation(W_out @ source + b_out)``: the outputs ``(member, ..., output)``."""
    return READOUT_ACTIVATIONS[model.readout.activation](
        readout_pre_activation(model, source, params))
