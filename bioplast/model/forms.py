"""sympy forms of a model's equations (drift, diffusion, subexpressions), as the backends
need them, and `linear_coefficients` (the form exponential Euler needs)."""

from __future__ import annotations

import graphlib
from typing import TYPE_CHECKING

import sympy
from brian2.core.namespace import DEFAULT_UNITS
from brian2.equations.equations import SUBEXPRESSION, Equations
from brian2.parsing.sympytools import str_to_sympy

from .vocabulary import RANDOM_FUNCTIONS

if TYPE_CHECKING:
    from .reader import _ModelReader
    from .spec import Model


class _SympyForms:
    """sympy forms of a model's equations, as the backends need them.

    Fills on the model:
    - ``step_subexpressions``: ``(constant over dt)`` subexpressions, evaluated once per step
      from the state at its start, in dependency order; each ``rand()``/``randn()`` call is
      replaced by a symbol listed in ``random_symbols`` (symbol name -> function name).
    - ``subexpressions``: the other subexpressions, with subexpressions substituted.
    - ``drift``: ``dx/dt`` without white noise; ``diffusion``: ``{xi name: coefficient}``.
    All are sympy expressions of states, parameters, coupling targets, step
    subexpressions, random symbols, ``t`` and ``dt`` only, in SI units (unit names such
    as ``ms`` are replaced by their values).
    """

    def __init__(self, reader: _ModelReader, equations: Equations, method: str):
        self.reader = reader
        self.equations = equations
        self.method = method

    def fill(self, model: Model) -> None:
        """Set the sympy forms on ``model``, under construction; raises the reader's
        located errors for cycles, non-linear exponential Euler and infinite constants."""
        eqs = self.equations
        random_symbols = {}
        raw = {}
        for eq in eqs.values():
            if eq.type == SUBEXPRESSION:
                expr = self.parse(eq.expr.code)
                for function in RANDOM_FUNCTIONS:
                    calls = [c for c in expr.atoms(sympy.Function)
                             if c.func.__name__ == function]
                    for call in calls:
                        symbol = sympy.Symbol(f"_{function}_{eq.varname}", real=True)
                        random_symbols[symbol.name] = function
                        expr = expr.xreplace({call: symbol})
                raw[eq.varname] = expr
        held = [n for n in eqs.subexpr_names if "constant over dt" in eqs[n].flags]
        plain = [n for n in eqs.subexpr_names if n not in held]
        substituted = self.substitute_plain(raw, plain)
        model.subexpressions = {n: substituted[n] for n in sorted(plain)}
        model.step_subexpressions = {
            n: self.expand(raw[n], substituted)
            for n in self.topological(raw, held, "'(constant over dt)' subexpressions")}
        model.random_symbols = random_symbols
        model.drift, model.diffusion = {}, {}
        for name in sorted(eqs.diff_eq_names):
            deterministic, stochastic = eqs[name].expr.split_stochastic()
            model.drift[name] = self.expand(self.parse(deterministic.code), substituted)
            model.diffusion[name] = {
                xi: self.expand(self.parse(coefficient.code), substituted)
                for xi, coefficient in (stochastic or {}).items()}
            if self.method == "exponential_euler":
                try:
                    linear_coefficients(model.drift[name], name)
                except ValueError:
                    raise self.reader.equation_error(
                        f"method 'exponential_euler' needs dx/dt linear in '{name}' (A*{name} "
                        "+ B with A, B free of it); use method 'euler'", name) from None

        forms = {**{n: [e] for n, e in model.subexpressions.items()},
                 **{n: [e] for n, e in model.step_subexpressions.items()},
                 **{n: [model.drift[n], *model.diffusion[n].values()] for n in model.drift}}
        for name, expressions in forms.items():
            if any(e.has(sympy.zoo, sympy.nan, sympy.I) for e in expressions):
                raise self.reader.equation_error(
                    f"the equation of '{name}' holds a constant that is infinite or complex "
                    "(a division by zero? the log or root of a negative number?)", name)

    @staticmethod
    def parse(code: str) -> sympy.Expr:
        """sympy form of an expression, with units replaced by their values in SI units."""
        expr = str_to_sympy(code)
        return expr.xreplace({s: sympy.Float(float(DEFAULT_UNITS[s.name]))
                              for s in expr.free_symbols if s.name in DEFAULT_UNITS})

    @staticmethod
    def expand(expr, substituted):
        return expr.xreplace({s: substituted[s.name] for s in expr.free_symbols
                              if s.name in substituted})

    def substitute_plain(self, raw, plain):
        """Plain subexpressions in terms of non-subexpression symbols."""
        order = self.topological(raw, plain, "subexpressions")
        done = {}
        for name in order:
            done[name] = self.expand(raw[name], done)
        return done

    def topological(self, raw, names, what):
        graph = {n: {s.name for s in raw[n].free_symbols if s.name in names} for n in names}
        try:
            return list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as error:
            cycle = error.args[1]
            raise self.reader.equation_error(
                f"{what} depend on each other in a cycle: {' -> '.join(cycle)}",
                cycle[0]) from None


def linear_coefficients(expr: sympy.Expr, variable: str) -> tuple[sympy.Expr, sympy.Expr]:
    """``(A, B)`` with ``expr == A*x + B`` and A, B free of ``x`` (Brian2's conditional
    linearity, used by exponential Euler). Raises ValueError if ``expr`` is not of that form."""
    symbol = next((s for s in expr.free_symbols if s.name == variable), None)
    if symbol is None:
        return sympy.Integer(0), expr
    collected = sympy.collect(sympy.expand(expr), symbol, evaluate=False)
    if set(collected) - {symbol, sympy.Integer(1)} or symbol not in collected:
        raise ValueError(f"not linear in {variable}")
    A, B = collected[symbol], collected.get(sympy.Integer(1), sympy.Integer(0))
    if A.has(symbol) or B.has(symbol):
        raise ValueError(f"not linear in {variable}")
    return A, B
