"""Initial values of parameters and states, as written in model files.

An init spec in a model file is one of
- a number or quantity (``0``, ``"10 ms"``): that constant;
- a name (``zeros``, ``xavier_uniform``, ...): that initializer with default arguments;
- a mapping with ``kind`` and arguments (``{kind: uniform, low: 1 ms, high: 2 ms}``);
- a mapping from population names to any of the above (``{E: 20 ms, I: 10 ms}``).

Fan-in initializers (``xavier_uniform``, ``uniform_fan_in``, ...) scale with the fan-in of a
matrix: a coupling's (or the readout's) own, or, for a per-unit parameter, that of the matrix
named by ``coupling:``: ``{kind: uniform_fan_in, coupling: W_in}`` draws a bias as torch's
``nn.Linear(n_inputs, n_units).bias`` (U(+-1/sqrt(fan_in)), the fan-in of that layer). A
matrix may take another matrix's fan-in the same way: torch's gated cells (``nn.GRUCell``,
``nn.LSTMCell``) draw their input weights as U(+-1/sqrt(hidden_size)), i.e. with the fan-in of
a recurrent matrix: ``{kind: uniform_fan_in, coupling: W_hr}`` on an input coupling.

Initializers draw from a ``numpy.random.Generator`` only. Quantities are in SI units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import numpy as np

from .quantities import parse_quantity, unit_string


@dataclass(frozen=True)
class Shape:
    """What an initializer needs to know about the array it fills.

    ``size`` is the array shape; ``fan_in`` / ``fan_out`` the number of presynaptic and
    postsynaptic units for a coupling matrix (``None`` for per-unit arrays); ``fans`` holds
    ``(fan_in, fan_out)`` of every matrix of the network by name, for per-unit arrays whose
    initializer takes its fan-in from one (``coupling:``).
    """

    size: tuple[int, ...]
    fan_in: int | None = None
    fan_out: int | None = None
    fans: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def of_matrix(self, name: str) -> "Shape":
        """This shape with the fan-in and fan-out of the matrix ``name``."""
        return replace(self, fan_in=self.fans[name][0], fan_out=self.fans[name][1])


def _constant(rng, shape, value):
    return np.full(shape.size, value, dtype=float)


def _zeros(rng, shape):
    return np.zeros(shape.size)


def _uniform(rng, shape, low, high):
    return rng.uniform(low, high, size=shape.size)


def _normal(rng, shape, mean=0.0, std=1.0):
    return rng.normal(mean, std, size=shape.size)


def _tanh_normal(rng, shape, mean=0.0, std=1.0):
    return np.tanh(rng.normal(mean, std, size=shape.size))


def _xavier_uniform(rng, shape, gain=1.0):
    bound = gain * math.sqrt(6.0 / (shape.fan_in + shape.fan_out))
    return rng.uniform(-bound, bound, size=shape.size)


def _xavier_normal(rng, shape, gain=1.0):
    return rng.normal(0.0, gain * math.sqrt(2.0 / (shape.fan_in + shape.fan_out)),
                      size=shape.size)


def _uniform_fan_in(rng, shape, gain=1.0):
    bound = gain / math.sqrt(shape.fan_in)
    return rng.uniform(-bound, bound, size=shape.size)


def _scaled_normal(rng, shape, gain=1.0):
    return rng.normal(0.0, gain / math.sqrt(shape.fan_in), size=shape.size)


@dataclass(frozen=True)
class InitializerKind:
    """One initializer: its function, which arguments carry the value's unit, which are
    required, whether it scales with a matrix's fan-in/fan-out (a coupling's own, or
    that of the matrix a per-unit parameter names with ``coupling:``), and whether its
    values are dimensionless whatever the arguments (a function such as tanh applied)."""

    draw: Callable[..., np.ndarray]
    description: str
    quantity_args: tuple[str, ...] = ()
    number_args: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    needs_matrix: bool = False
    dimensionless: bool = False


INITIALIZERS: dict[str, InitializerKind] = {
    "constant": InitializerKind(_constant, "every element equal to `value`",
                                quantity_args=("value",), required=("value",)),
    "zeros": InitializerKind(_zeros, "all zeros"),
    "uniform": InitializerKind(_uniform, "U(low, high)", quantity_args=("low", "high"),
                               required=("low", "high")),
    "normal": InitializerKind(_normal, "N(mean, std^2)", quantity_args=("mean", "std")),
    "tanh_normal": InitializerKind(
        _tanh_normal, "tanh(N(mean, std^2)): a rate drawn inside a tanh (dimensionless)",
        number_args=("mean", "std"), dimensionless=True),
    "xavier_uniform": InitializerKind(
        _xavier_uniform, "U(-b, b), b = gain*sqrt(6/(fan_in+fan_out)) (Glorot & Bengio 2010)",
        number_args=("gain",), needs_matrix=True),
    "xavier_normal": InitializerKind(
        _xavier_normal, "N(0, gain^2 * 2/(fan_in+fan_out)) (Glorot & Bengio 2010)",
        number_args=("gain",), needs_matrix=True),
    "uniform_fan_in": InitializerKind(
        _uniform_fan_in, "U(-gain/sqrt(fan_in), gain/sqrt(fan_in)) (torch nn.Linear default: "
        "its weight; with `coupling: W_in` on a per-unit parameter, W_in's layer's bias)",
        number_args=("gain",), needs_matrix=True),
    "scaled_normal": InitializerKind(
        _scaled_normal, "N(0, gain^2/fan_in): random network with gain g (Sompolinsky 1988)",
        number_args=("gain",), needs_matrix=True),
}


@dataclass(frozen=True)
class Initializer:
    """A parsed init spec: ``kind`` with arguments in SI units, or one per population.

    ``coupling`` names the matrix whose fan-in (and fan-out) a per-unit array's fan-in
    initializer takes (``None``: the array's own, for a matrix).
    """

    kind: str
    args: Mapping[str, float] = field(default_factory=dict)
    per_population: Mapping[str, "Initializer"] | None = None
    coupling: str | None = None

    def draw(self, rng: np.random.Generator, shape: Shape,
             population_slices: Mapping[str, slice] | None = None) -> np.ndarray:
        """An array of ``shape.size`` drawn from ``rng``.

        Per-population initializers fill the slices of the first axis (the units).
        """
        if self.per_population is None:
            if self.coupling is not None:
                shape = shape.of_matrix(self.coupling)
            return INITIALIZERS[self.kind].draw(rng, shape, **self.args)
        values = np.zeros(shape.size)
        for name, part in self.per_population.items():
            rows = population_slices[name]
            values[rows] = part.draw(rng, replace(shape, size=(rows.stop - rows.start,
                                                               *shape.size[1:])))
        return values

    def bounded_range(self) -> tuple[float, float] | None:
        """``(lowest, highest)`` value it can draw, or None when unbounded (normal, ...)."""
        if self.per_population is not None:
            ranges = [part.bounded_range() for part in self.per_population.values()]
            if None in ranges:
                return None
            return min(r[0] for r in ranges), max(r[1] for r in ranges)
        if self.kind == "constant":
            return self.args["value"], self.args["value"]
        if self.kind == "zeros":
            return 0.0, 0.0
        if self.kind == "uniform":
            return self.args["low"], self.args["high"]
        return None


def parse_initializer(spec, dim, populations: tuple[str, ...] = (), *, matrix: bool = False,
                      per_unit: bool = True,
                      matrices: tuple[str, ...] | None = None) -> Initializer:
    """Read an init spec (see module docstring) whose values have dimension ``dim``.

    ``matrix``: the array is a coupling matrix (fan-in initializers take its own fan-in);
    ``per_unit``: it has a unit axis (per-population values allowed);
    ``matrices``: the matrices whose fan-in a fan-in initializer of this array may take
    with ``coupling:`` (None: none may, e.g. for initial states; a matrix then takes its own).

    Raises
    ------
    ValueError
        With a one-line reason; the caller adds file and key.
    """
    if isinstance(spec, Mapping) and "kind" not in spec:
        unknown = [name for name in spec if name not in populations]
        if not populations or unknown:
            raise ValueError("an init mapping needs 'kind' (one of "
                             f"{', '.join(INITIALIZERS)}) or population names as keys"
                             + (f" (populations: {', '.join(populations)})" if populations
                                else ""))
        if not per_unit:
            raise ValueError("per-population values need a per-unit array (this one is "
                             "shared: one value per network)")
        missing = [name for name in populations if name not in spec]
        if missing:
            raise ValueError(f"no init given for population(s) {', '.join(missing)}")
        return Initializer("per_population", per_population={
            name: parse_initializer(spec[name], dim, matrix=matrix, matrices=matrices)
            for name in populations})
    if isinstance(spec, str) and spec in INITIALIZERS:
        name, args = spec, {}
    elif isinstance(spec, Mapping):
        name, args = spec["kind"], {k: v for k, v in spec.items() if k != "kind"}
        if name not in INITIALIZERS:
            raise ValueError(f"unknown initializer '{name}' (known: {', '.join(INITIALIZERS)})")
    elif isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
        if isinstance(spec, str) and not any(ch.isdigit() for ch in spec) \
                and spec.strip().lstrip("+-") != "inf":
            raise ValueError(f"cannot read '{spec}' as a value or an initializer (initializers: "
                             f"{', '.join(INITIALIZERS)})")
        name, args = "constant", {"value": spec}
    else:
        raise ValueError(f"cannot read {spec!r} as an init spec")
    kind = INITIALIZERS[name]
    if kind.dimensionless and unit_string(dim) != "1":
        raise ValueError(f"initializer '{name}' draws dimensionless values; this array has "
                         f"unit {unit_string(dim)}")
    coupling = _fan_source(name, args.pop("coupling", None), matrix, matrices) \
        if kind.needs_matrix else None
    values = {}
    for arg, value in args.items():
        if arg in kind.quantity_args:
            values[arg] = parse_quantity(value, dim)
        elif arg in kind.number_args:
            values[arg] = parse_quantity(value)
        else:
            allowed = kind.quantity_args + kind.number_args
            raise ValueError(f"initializer '{name}' takes no argument '{arg}'"
                             + (f" (arguments: {', '.join(allowed)})" if allowed else ""))
        if not np.isfinite(values[arg]):
            raise ValueError(f"initializer '{name}': {arg} must be finite, got {value!r}")
    missing = [arg for arg in kind.required if arg not in values]
    if missing:
        raise ValueError(f"initializer '{name}' needs {', '.join(missing)}"
                         + (f": {{kind: {name}, {', '.join(a + ': ...' for a in missing)}}}"
                            if isinstance(spec, str) else ""))
    if values.get("std", 0) < 0 or values.get("gain", 0) < 0:
        raise ValueError(f"initializer '{name}': std and gain cannot be negative")
    if "low" in values and values["high"] < values["low"]:
        raise ValueError(f"initializer 'uniform': high ({args['high']}) is below low "
                         f"({args['low']})")
    return Initializer(name, values, coupling=coupling)


def _fan_source(name: str, coupling, matrix: bool,
                matrices: tuple[str, ...] | None) -> str | None:
    """The matrix whose fan-in the fan-in initializer ``name`` takes: None for a matrix (its
    own unless ``coupling`` names another), the one named by ``coupling`` for any other
    array (see `parse_initializer`)."""
    if matrix and coupling is None:
        return None
    if matrices is None:
        raise ValueError(f"initializer '{name}' scales with the fan-in of a coupling matrix; "
                         "use it for couplings and parameters only (here: constant, zeros, "
                         "uniform, normal)")
    known = f"(couplings: {', '.join(matrices) or 'none'})"
    if coupling is None:
        raise ValueError(f"initializer '{name}' scales with the fan-in of a coupling matrix; "
                         f"name the one whose fan-in this parameter takes: {{kind: {name}, "
                         f"coupling: NAME}} {known}")
    if coupling not in matrices:
        raise ValueError(f"initializer '{name}': unknown coupling {coupling!r} {known}")
    return coupling
