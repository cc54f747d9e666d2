"""The `Model`: a validated rate network as a frozen, hashable spec.

A `Model` holds what `bioplast.model.reader` read from a model file: the parsed
``brian2.Equations``, the couplings ``target = W @ source``, the readout, the parameter
specs (`bioplast.model.parts`) and the sympy forms of every expression for the backends
(`bioplast.model.forms`). It draws parameter and state values (`Model.init_params`,
`Model.initial_state`), projects parameters onto their constraints and checks them;
`Model.structure_key` names what a compiled time loop depends on.
"""

from __future__ import annotations

import zlib
from functools import cached_property
from typing import Any, Mapping, NamedTuple

import numpy as np
import sympy

from .. import schema
from ..errors import InputError
from ..initializers import Initializer, Shape
from ..limits import (SYMBOLIC_SECONDS, TimeBoundExceeded, array_bytes, check_memory,
                      time_bound)
from ..quantities import unit_string
from ..yamlfile import YamlDocument
from .parts import Coupling, Readout
from .reader import _ModelReader


class StructureKey(NamedTuple):
    """What a model's compiled time loop depends on (see `Model.structure_key`).

    Sympy forms are ``(name, sympy.srepr(expression))`` pairs; ``params`` holds per array
    ``(name, dims, trainable, min, max, zero_diagonal, dale)``.
    """

    method: str
    dt: float
    state_names: tuple[str, ...]
    drift: tuple[tuple[str, str], ...]
    diffusion: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    step_subexpressions: tuple[tuple[str, str], ...]
    subexpressions: tuple[tuple[str, str], ...]
    random_symbols: tuple[tuple[str, str], ...]
    couplings: tuple[Coupling, ...]
    readout: Readout | None
    params: tuple[tuple[str, tuple[str, ...], bool, float | None, float | None, bool, bool],
                  ...]


class Model:
    """A validated rate-network model: a frozen, hashable spec. Build with `load_model`.

    Frozen: once built, setting or deleting an attribute raises AttributeError (for a
    changed model, ``load_model(model, **overrides)``); the mappings it holds are not to be
    changed either. Equal (and hash equal) models behave the same: they have the same model
    text (where it was read from is not part of it) and the same effective settings after
    overrides (sizes, ``dt``, method, equations, couplings, readout, parameter specs with
    their initial values and bounds, populations, initial states), so two loads of one
    file with the same overrides are equal. `structure_key` is coarser: what the compiled
    time loop depends on. Models pickle (Dask ships them to workers) and unpickle equal.

    Attributes
    ----------
    name, description : str
    text : str
        The model file's YAML text (what results store for provenance).
    file : str
        Where the model came from, for messages.
    overrides : dict
        The overrides applied on top of ``defaults``.
    equations : brian2.Equations
        The unit's equations, bioplast flags stripped, coupling targets declared.
    n_units, n_inputs, n_outputs : int
    dt : float
        Time step in seconds.
    method : str
        ``euler`` or ``exponential_euler``.
    params : dict of str to ParamSpec
        Every parameter array of a network, in a fixed order.
    couplings : dict of str to Coupling
    readout : Readout or None
    populations : tuple of Population
    initial : dict of str to Initializer
        Initial-value specs of states (zeros where absent).
    state_names : tuple of str
        The differential-equation variables.
    drift, diffusion, step_subexpressions, subexpressions, random_symbols :
        sympy forms of the equations (see `bioplast.model.forms._SympyForms`).
    """

    def __init__(self, document: YamlDocument, overrides: Mapping[str, Any]):
        self.text = document.text
        self.file = document.name
        self.overrides = dict(overrides)
        try:
            with time_bound(SYMBOLIC_SECONDS, "reading the equations"):
                _ModelReader(document, overrides).fill(self)
        except TimeBoundExceeded as error:
            raise InputError(f"{error} (simplify them)", file=document.name,
                             key="equations") from None
        except RecursionError:
            raise InputError("the equations are nested too deeply to analyse (simplify them)",
                             file=document.name, key="equations") from None
        check_memory(sum(array_bytes(*self.param_shape(name)) for name in self.params),
                     f"the parameters of {self.n_units} units", file=document.name,
                     key="n_units")
        self._frozen = True

    def __setattr__(self, name: str, value) -> None:
        self._refuse_change(name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self._refuse_change(name)
        super().__delattr__(name)

    def _refuse_change(self, name: str) -> None:
        if self.__dict__.get("_frozen"):
            raise AttributeError(f"cannot change '{name}': a Model is frozen "
                                 "(load_model(model, **overrides) gives a changed one)")

    # ------------------------------------------------------------------ identity
    def structure_key(self) -> StructureKey:
        """What the compiled time loop of this model depends on, as a hashable tuple.

        Models with equal keys run the same time-loop code, with sizes and parameter values
        as its inputs: a compiled engine can be cached per key. The key holds the method and ``dt``; the state names
        and the sympy forms (drift, diffusion, step subexpressions in their order, plain
        subexpressions, random symbols) as exact ``sympy.srepr`` strings; the couplings; the
        readout; and per parameter array its name, dims (names, not sizes), trainable flag,
        bounds, whether its diagonal is zero and whether Dale's law fixes its column signs.
        Not in it: ``n_units``, ``n_inputs``, ``n_outputs`` (nor trial counts), initial
        values of parameters and states, populations, units, names and texts.
        """
        return self._structure

    @cached_property
    def _structure(self) -> StructureKey:
        def forms(expressions: Mapping[str, sympy.Expr]) -> tuple[tuple[str, str], ...]:
            return tuple((name, sympy.srepr(expr)) for name, expr in expressions.items())

        return StructureKey(
            method=self.method, dt=self.dt, state_names=self.state_names,
            drift=forms(self.drift),
            diffusion=tuple((name, forms(terms)) for name, terms in self.diffusion.items()),
            step_subexpressions=forms(self.step_subexpressions),
            subexpressions=forms(self.subexpressions),
            random_symbols=tuple(self.random_symbols.items()),
            couplings=tuple(self.couplings.values()), readout=self.readout,
            params=tuple((spec.name, spec.dims, spec.trainable, spec.min, spec.max,
                          spec.zero_diagonal, spec.column_sign is not None)
                         for spec in self.params.values()))

    @cached_property
    def _identity(self) -> tuple:
        """What equality and the hash compare (see the class docstring)."""
        return (self.text, self.name, self.description, str(self.equations), self.n_units,
                self.n_inputs, self.n_outputs, self.structure_key(), self.populations,
                tuple((spec.unit, _initializer_key(spec.init), spec.column_sign,
                       spec.zero_diagonal_at_init) for spec in self.params.values()),
                tuple((name, _initializer_key(init))
                      for name, init in sorted(self.initial.items())))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Model):
            return NotImplemented
        return self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    # ------------------------------------------------------------------ shapes
    @property
    def sizes(self) -> dict[str, int]:
        """Size of every dimension a parameter can have."""
        return {schema.UNIT: self.n_units, schema.PRESYNAPTIC: self.n_units,
                schema.INPUT: self.n_inputs, schema.OUTPUT: self.n_outputs}

    def param_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one parameter array."""
        return tuple(self.sizes[d] for d in self.params[name].dims)

    def unit_of(self, name: str) -> str:
        """Unit name of an equation variable or parameter array."""
        if name in self.params:
            return self.params[name].unit
        return unit_string(self.equations.dimensions[name])

    @property
    def recordable(self) -> tuple[str, ...]:
        """Variables a backend can record: states, subexpressions and coupling targets."""
        return (*self.state_names, *self.step_subexpressions, *self.subexpressions,
                *(c.target for c in self.couplings.values()))

    @property
    def matrix_fans(self) -> dict[str, tuple[int, int]]:
        """``(fan_in, fan_out)`` of every matrix (couplings, readout): its presynaptic and
        postsynaptic sizes (``n_inputs`` or ``n_units``; ``n_units`` or ``n_outputs``)."""
        return {name: (self.sizes[spec.dims[1]], self.sizes[spec.dims[0]])
                for name, spec in self.params.items() if len(spec.dims) == 2}

    @property
    def population_slices(self) -> dict[str, slice]:
        """The units of each population."""
        return {p.name: slice(p.start, p.stop) for p in self.populations}

    # ------------------------------------------------------------------ values
    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Draw every parameter array (float64, SI units) for one network.

        Each array gets its own stream derived from ``seed`` and its name, so adding a
        parameter to a model does not change the others.
        """
        params, fans = {}, self.matrix_fans
        for name, spec in self.params.items():
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            value = spec.init.draw(rng, Shape(self.param_shape(name), *fans.get(name, (None, None)),
                                              fans), self.population_slices)
            if spec.zero_diagonal_at_init:  # autapses: start_at_zero (trained afterwards)
                value = _without_diagonal(value)
            if spec.column_sign is not None:  # Dale's law, balanced E and I drive
                sign = np.asarray(spec.column_sign)
                n_exc, n_inh = np.sum(sign > 0), np.sum(sign < 0)
                scale = np.where(sign < 0, n_exc / max(n_inh, 1), 1.0)
                value = np.abs(value) * sign * scale
            params[name] = self.constrain(value, name)
        return params

    def constrain(self, value, name: str):
        """Project one parameter array onto its constraints (bounds, autapses, Dale's law).

        Works on numpy arrays and torch tensors, with or without a leading member axis;
        returns a new array of the same kind.
        """
        spec = self.params[name]
        if spec.min is not None or spec.max is not None:
            value = value.clip(spec.min, spec.max)
        if spec.zero_diagonal:
            value = _without_diagonal(value)
        if spec.column_sign is not None:
            sign = _like(np.asarray(spec.column_sign), value)
            value = (value * sign).clip(0, None) * sign
        return value

    def check_params(self, params: Mapping[str, Any], where: str = "params") -> int | None:
        """Check names, shapes, finiteness and constraints of ``params``.

        Returns the number of members (the leading batch axis) or ``None`` when the arrays
        have none. Raises `InputError` naming the offending array.
        """
        missing = [name for name in self.params if name not in params]
        unknown = [name for name in params if name not in self.params]
        if missing or unknown:
            raise InputError(
                (f"missing {', '.join(missing)}" if missing else "")
                + ("; " if missing and unknown else "")
                + (f"unknown {', '.join(unknown)}" if unknown else "")
                + f" (model '{self.name}' has: {', '.join(self.params)})", file=where)
        member_counts = {}
        for name, spec in self.params.items():
            try:
                array = np.asarray(_to_numpy(params[name]), dtype=float)
            except (TypeError, ValueError):
                raise InputError(f"not an array of real numbers: {params[name]!r:.60}",
                                 file=where, key=name) from None
            shape, expected = tuple(array.shape), self.param_shape(name)
            if shape == expected:
                member_counts[name] = None
            elif len(shape) == len(expected) + 1 and shape[1:] == expected:
                member_counts[name] = shape[0]
            else:
                raise InputError(f"shape {shape}, expected {expected} or (member, *{expected}) "
                                 f"with dims ({', '.join(spec.dims)})", file=where, key=name)
            if not np.all(np.isfinite(array)):
                raise InputError("holds NaN or inf", file=where, key=name)
            constrained = _to_numpy(self.constrain(array, name))
            if not np.array_equal(constrained, array):
                raise InputError(f"violates its constraints ({spec.describe_constraints()}); "
                                 "Model.constrain projects onto them", file=where, key=name)
        if len(set(member_counts.values())) > 1:
            raise InputError("inconsistent member axis across parameter arrays: "
                             + ", ".join(f"{k}: {v or 'none'}" for k, v in member_counts.items()),
                             file=where)
        return next(iter(member_counts.values()), None)

    def initial_state(self, n_trials: int, seed: int = 0,
                      n_members: int | None = None) -> dict[str, np.ndarray]:
        """Initial value of every state variable, shaped ``([member,] trial, unit)``."""
        lead = (n_trials,) if n_members is None else (n_members, n_trials)
        state = {}
        for name in self.state_names:
            rng = np.random.default_rng([seed, zlib.crc32(("initial " + name).encode())])
            init = self.initial.get(name, Initializer("zeros"))
            block = init.draw(rng, Shape((self.n_units, int(np.prod(lead)))),
                              self.population_slices)
            state[name] = block.T.reshape(*lead, self.n_units)
        return state

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, n_units={self.n_units}, n_inputs={self.n_inputs}, "
                f"n_outputs={self.n_outputs}, dt={self.dt!r}, method={self.method!r})")


def _initializer_key(init: Initializer) -> tuple:
    """An initializer as a hashable tuple (its arguments are held in mappings)."""
    parts = init.per_population
    return (init.kind, tuple(sorted(init.args.items())), init.coupling,
            None if parts is None else tuple((name, _initializer_key(part))
                                             for name, part in parts.items()))


def _without_diagonal(value):
    """A copy of ``value`` ``(..., n, n)`` with a zero diagonal, made where ``value`` lives
    (no mask built on the host and copied to a device at every update)."""
    if isinstance(value, np.ndarray):
        value = value.copy()
        index = np.arange(value.shape[-1])
        value[..., index, index] = 0.0
        return value
    value = value.clone()
    value.diagonal(dim1=-2, dim2=-1).zero_()
    return value


def _like(array: np.ndarray, reference):
    """``array`` as the same kind (numpy or torch, dtype, device) as ``reference``."""
    if isinstance(reference, np.ndarray):
        return array
    import torch
    return torch.as_tensor(array, dtype=reference.dtype, device=reference.device)


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
