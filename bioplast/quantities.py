"""Physical quantities written in files (``"10 ms"``, ``"1.5 mV/ms"``, ``0.5``).

Parsed with Brian2's expression parser into sympy and evaluated over Brian2's unit table
(never ``eval``); returned as plain floats in SI base units, after checking dimensions.
"""

from __future__ import annotations

import re

import brian2
from brian2.units.fundamentalunits import DIMENSIONLESS
from brian2.core.namespace import DEFAULT_UNITS
from brian2.parsing.sympytools import str_to_sympy

from .expressions import UnsupportedExpression, compile_expression

_NUMBER_THEN_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:\*\s*)?(.*?)\s*$")


def unit_string(dim) -> str:
    """Brian2's name for a dimension (``second``, ``volt``; ``1`` when dimensionless)."""
    return "1" if dim is DIMENSIONLESS else repr(brian2.get_unit(dim))


def parse_quantity(value, dim=DIMENSIONLESS) -> float:
    """Value of ``value`` in SI base units, checked against the dimension ``dim``.

    Parameters
    ----------
    value : int, float or str
        A number (only for dimensionless quantities) or a string such as ``"10 ms"``,
        ``"10*ms"``, ``"2.5 mV/ms"``, ``"inf"``.
    dim : brian2 Dimension
        The expected dimension.

    Raises
    ------
    ValueError
        With a one-line reason when the text is not a quantity or has the wrong dimension.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity, got {value!r}")
    if isinstance(value, (int, float)):
        if dim is not DIMENSIONLESS:
            raise ValueError(f"{value!r} needs a unit of {unit_string(dim)}, "
                             f"e.g. '{value} {_example_unit(dim)}'")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a number or a quantity such as '10 ms', got {value!r}")
    match = _NUMBER_THEN_UNIT.match(value)
    if match and not match.group(2) and dim is not DIMENSIONLESS:
        raise ValueError(f"{value!r} needs a unit of {unit_string(dim)}, "
                         f"e.g. '{value.strip()} {_example_unit(dim)}'")
    if match:  # "10 ms", "10*ms", "0 * ms", "1.5 mV/ms", "3": the number times its unit
        unit = _evaluate_units(match.group(2), value) if match.group(2) else 1
        quantity = float(match.group(1)) * unit
    elif value.strip().lstrip("+-") == "inf":
        quantity = float(value)
    else:
        raise ValueError(f"cannot read {value!r} as a quantity: expected a number and a unit, "
                         "such as '10 ms'")
    found = brian2.get_dimensions(quantity)
    if found is not dim:
        raise ValueError(f"{value!r} has unit {unit_string(found)}, expected "
                         f"{unit_string(dim)}")
    return float(quantity)


def _evaluate_units(text: str, value: str):
    """A Brian2 unit (or number) from an expression over unit names, such as ``mV/ms``."""
    try:
        expr = str_to_sympy(text.strip())
    except (SyntaxError, TypeError, ValueError) as error:
        raise ValueError(f"cannot read {value!r} as a quantity ({error})") from None
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in DEFAULT_UNITS)
    if unknown:
        hint = " (Brian2 writes seconds as 'second' or 'ms')" if "s" in unknown else ""
        raise ValueError(f"unknown unit {', '.join(map(repr, unknown))} in {value!r}{hint}")
    try:
        return compile_expression(expr, {})(DEFAULT_UNITS)
    except (UnsupportedExpression, brian2.DimensionMismatchError) as error:
        raise ValueError(f"cannot read {value!r} as a quantity ({error})") from None


def _example_unit(dim) -> str:
    return {brian2.second.dim: "ms", brian2.volt.dim: "mV", brian2.hertz.dim: "Hz"}.get(
        dim, unit_string(dim))
