"""Evaluate sympy expressions (from Brian2's parser) without ``eval``.

`compile_expression` walks a sympy tree once and returns a closure ``f(env)`` built from
Python operators and a table of functions. The same closure works on floats, numpy arrays,
torch tensors or Brian2 quantities, depending on what the environment holds and which
function table is passed. Nothing is executed that is not in the tree or the table.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Mapping

import sympy

Env = Mapping[str, Any]
Closure = Callable[[Env], Any]

#: Brian2's function names for the sympy function classes its parser produces.
SYMPY_TO_BRIAN2_FUNCTION = {
    "Abs": "abs", "ceiling": "ceil", "asin": "arcsin", "acos": "arccos", "atan": "arctan",
    "int_": "int",
}

_RELATIONS = {
    sympy.StrictGreaterThan: operator.gt, sympy.GreaterThan: operator.ge,
    sympy.StrictLessThan: operator.lt, sympy.LessThan: operator.le,
    sympy.Equality: operator.eq, sympy.Unequality: operator.ne,
}


class UnsupportedExpression(ValueError):
    """The expression uses a construct or function the evaluator does not provide."""


def function_name(expr: sympy.Basic) -> str:
    """Brian2's name of the function applied at the root of ``expr`` (``Abs`` -> ``abs``)."""
    name = expr.func.__name__
    return SYMPY_TO_BRIAN2_FUNCTION.get(name, name)


def compile_expression(expr: sympy.Basic, functions: Mapping[str, Callable]) -> Closure:
    """Turn ``expr`` into a closure ``env -> value``.

    Parameters
    ----------
    expr : sympy.Basic
        An expression as produced by ``brian2.parsing.sympytools.str_to_sympy``.
    functions : mapping of str to callable
        Implementations by Brian2 function name (``tanh``, ``clip``, ``int``, ...).

    Raises
    ------
    UnsupportedExpression
        For a function missing from ``functions`` or a construct with no meaning here.
    """
    if isinstance(expr, sympy.Symbol):
        name = expr.name
        return lambda env: env[name]
    if expr is sympy.true or expr is sympy.false:
        value = bool(expr)
        return lambda env: value
    if expr.is_Number or expr.is_NumberSymbol or expr in (sympy.oo, -sympy.oo):
        if expr in (sympy.zoo, sympy.nan):
            raise UnsupportedExpression(f"the expression contains an undefined value ({expr})")
        value = float(expr)
        return lambda env: value
    if isinstance(expr, sympy.Add):
        return _compile_add(expr, functions)
    if isinstance(expr, sympy.Mul):
        return _compile_mul(expr, functions)
    args = [compile_expression(arg, functions) for arg in expr.args]
    if isinstance(expr, sympy.Pow):
        base, exponent = args
        if expr.exp == -1:
            return lambda env: 1.0 / base(env)
        return lambda env: base(env) ** exponent(env)
    if type(expr) in _RELATIONS:
        relation = _RELATIONS[type(expr)]
        left, right = args
        return lambda env: relation(left(env), right(env))
    if isinstance(expr, sympy.And):
        return _fold(operator.and_, args)
    if isinstance(expr, sympy.Or):
        return _fold(operator.or_, args)
    if isinstance(expr, sympy.Not):
        (inner,) = args
        return lambda env: ~inner(env)
    if isinstance(expr, sympy.Mod):
        left, right = args
        return lambda env: left(env) % right(env)
    if isinstance(expr, sympy.Function):
        name = function_name(expr)
        if name not in functions:
            raise UnsupportedExpression(f"function '{name}' is not supported here "
                                        f"(supported: {', '.join(sorted(functions))})")
        implementation = functions[name]
        if len(args) == 1:
            (only,) = args
            return lambda env: implementation(only(env))
        return lambda env: implementation(*(a(env) for a in args))
    raise UnsupportedExpression(f"unsupported construct '{type(expr).__name__}' in "
                                f"expression '{expr}'")


def _compile_add(expr: sympy.Add, functions):
    """A sum with its numbers folded into one constant (left out when 0): fewer tensor
    operations, so fewer autograd nodes."""
    constant = float(sum(arg for arg in expr.args if arg.is_Number))
    terms = [compile_expression(arg, functions) for arg in expr.args if not arg.is_Number]

    total = _fold(operator.add, terms)
    if not constant:
        return total
    return lambda env: total(env) + constant


def _fold(operation, parts):
    """``operation`` over the values of ``parts``, left to right (pairs unrolled: this
    runs at every step of every network)."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda env: operation(first(env), second(env))
    head = _fold(operation, parts[:-1])
    last = parts[-1]
    return lambda env: operation(head(env), last(env))


def _compile_mul(expr: sympy.Mul, functions):
    """A product as ``coefficient * numerators / denominators``: factors ``x**-1`` become
    one division, a coefficient of -1 a negation, a coefficient of 1 nothing."""
    coefficient = float(sympy.Mul(*[arg for arg in expr.args if arg.is_Number]))
    numerators = [compile_expression(arg, functions) for arg in expr.args
                  if not arg.is_Number and not (isinstance(arg, sympy.Pow) and arg.exp == -1)]
    denominators = [compile_expression(arg.base, functions) for arg in expr.args
                    if isinstance(arg, sympy.Pow) and arg.exp == -1]

    product = _fold(operator.mul, numerators) if numerators else (lambda env: 1.0)
    if coefficient == -1.0:
        scaled = lambda env: -product(env)  # noqa: E731
    elif coefficient != 1.0:
        scaled = lambda env: coefficient * product(env)  # noqa: E731
    else:
        scaled = product
    return _fold(operator.truediv, [scaled, *denominators])
