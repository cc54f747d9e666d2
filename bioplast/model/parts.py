"""The frozen values a `Model` is made of: parameter specs, couplings, readout, populations."""

from __future__ import annotations

from dataclasses import dataclass

from ..initializers import Initializer


def with_unit(value: float, unit: str) -> str:
    """``value`` with its unit name, for messages (``1 ms``; a bare number when unitless)."""
    return f"{value:g}" if unit == "1" else f"{value:g} {unit}"


@dataclass(frozen=True)
class ParamSpec:
    """One named array of a network's parameters.

    ``dims`` names the axes (``("unit",)``, ``("unit", "presynaptic")``, ``()`` for shared);
    values are in SI units (``unit`` is Brian2's unit name). ``min``/``max`` are bounds,
    ``zero_diagonal`` forbids autapses, ``column_sign`` (+1/-1 per presynaptic unit) is
    Dale's law. ``zero_diagonal_at_init`` is no constraint: the drawn values get a zero
    diagonal, which training may then change (``autapses: start_at_zero``).
    """

    name: str
    dims: tuple[str, ...]
    unit: str
    init: Initializer
    trainable: bool
    min: float | None = None
    max: float | None = None
    zero_diagonal: bool = False
    column_sign: tuple[float, ...] | None = None
    zero_diagonal_at_init: bool = False

    def describe_constraints(self) -> str:
        """The constraints in words, for messages (``min 1 ms, no autapses: ...``)."""
        parts = []
        if self.min is not None:
            parts.append(f"min {with_unit(self.min, self.unit)}")
        if self.max is not None:
            parts.append(f"max {with_unit(self.max, self.unit)}")
        if self.zero_diagonal:
            parts.append("no autapses: zero diagonal")
        if self.column_sign is not None:
            parts.append("Dale's law: column signs fixed by population")
        return ", ".join(parts)


@dataclass(frozen=True)
class Coupling:
    """``target = W @ source``: W shaped ``(unit, presynaptic)`` or ``(unit, input)``."""

    name: str
    source: str
    target: str


@dataclass(frozen=True)
class Readout:
    """``outputs = activation(W_out @ source + b_out)``, W_out shaped ``(output, unit)``."""

    source: str
    activation: str
    bias: bool


@dataclass(frozen=True)
class Population:
    """A named block of units ``[start, stop)``; ``sign`` +1 (excitatory), -1 (inhibitory)
    or None."""

    name: str
    start: int
    stop: int
    sign: float | None
