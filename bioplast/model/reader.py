"""Reading one model document into a `Model`: every check, every error located.

`_ModelReader` applies overrides to the document (settings, parameter values, and dotted
paths that edit the document), then reads and validates it section by section, filling the
`Model` under construction; `_SympyForms` (`bioplast.model.forms`) adds the sympy forms.
Nothing is executed: equations go through Brian2's parser and sympy conversion only.
"""

from __future__ import annotations

import copy
import keyword
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import brian2
import numpy as np
from brian2.core.namespace import DEFAULT_CONSTANTS, DEFAULT_FUNCTIONS, DEFAULT_UNITS
from brian2.equations.equations import (DIFFERENTIAL_EQUATION, PARAMETER, Equations,
                                        SingleEquation)
from brian2.equations.unitcheck import check_dimensions
from brian2.units.fundamentalunits import DIMENSIONLESS, Quantity

from .. import schema
from ..errors import InputError
from ..initializers import Initializer, parse_initializer
from ..limits import MAX_EQUATIONS_CHARS, MAX_NAME_CHARS, ExpressionTooLarge, check_expression
from ..quantities import parse_quantity, unit_string
from ..yamlfile import YamlDocument, shown_key
from .forms import _SympyForms
from .parts import Coupling, ParamSpec, Population, Readout, with_unit
from .vocabulary import (ALLOWED_FLAGS, AUTAPSES_START_AT_ZERO, BIOPLAST_FLAGS,
                         COUPLING_KEYS, DOCUMENT_KEYS, INPUT_SOURCE, METHODS, PARAMETER_KEYS,
                         POPULATION_KEYS, RANDOM_FUNCTIONS, READOUT_ACTIVATIONS, READOUT_KEYS,
                         STRUCTURE_KEYS, SUPPORTED_FUNCTIONS, TOP_LEVEL_KEYS)

if TYPE_CHECKING:
    from .spec import Model


def _deep_merge(target: dict, source: Mapping) -> None:
    """Merge ``source`` into ``target``: mappings recursively, anything else replaced. An
    init spec with a ``kind`` replaces the old one whole (its arguments belong to it)."""
    for key, value in source.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict) \
                and "kind" not in value:
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _leaf_paths(value, path=()):
    """Key paths to the values an override sets (an init spec with a ``kind`` is one)."""
    if isinstance(value, Mapping) and value and "kind" not in value:
        return [leaf for key, item in value.items()
                for leaf in _leaf_paths(item, (*path, str(key)))]
    return [path]


def _is_identifier(name) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name) \
        and not name.startswith("_")


def _expression_and_unit(code: str) -> list[str]:
    """The expression and the unit text of one equation line ``LHS = EXPR : UNIT (FLAGS)``
    (``NAME : UNIT`` for a parameter), to be measured before Brian2 and sympy see them."""
    left, _, right = code.rpartition(":")
    unit = re.sub(r"\(\s*[A-Za-z_][\w\s,]*\)\s*$", "", right).strip()
    expression = left.partition("=")[2] if "=" in left else ""
    return [part for part in (expression, unit) if part.strip()]


_PYPARSING_REASON = re.compile(r"(Expected .*?)\s*\(at char \d+\), \(line:\d+, col:(\d+)\)")


def _reason(error: Exception) -> str:
    """A one-line reason from a Brian2 / pyparsing / sympy error."""
    text = str(error)
    match = _PYPARSING_REASON.search(text)
    if match:
        return f"{match.group(1)} (column {match.group(2)})"
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    return " ".join(text.split())


class _ModelReader:
    """Reads one model document into a `Model`; every check raises a located InputError."""

    def __init__(self, document: YamlDocument, overrides: Mapping[str, Any]):
        self.doc = document
        self.data = copy.deepcopy(document.data)
        self.overrides = {}
        self.edited: list[tuple[str, ...]] = []  # key paths that overrides changed
        for key, value in overrides.items():
            if "." in key or key in DOCUMENT_KEYS:
                self.edited += [(*key.split("."), *leaf) for leaf in _leaf_paths(value)]
                *parents, last = key.split(".")
                for part in reversed(parents):
                    value = {last: value}
                    last = part
                _deep_merge(self.data, {last: value})
            else:
                self.overrides[key] = value

    def error(self, message: str, *key_path, line: int | None = None) -> InputError:
        """An error at a key path of the file, or at the override that changed it (or a
        key below it)."""
        path = tuple(str(part) for part in key_path)
        for edited in self.edited:
            overridden = path[:len(edited)] == edited or edited[:len(path)] == path
            if path and overridden:
                return InputError(message, file=self.doc.name, key=f"override {'.'.join(path)}")
        return self.doc.error(message, key_path, line=line)

    def fail(self, message: str, at) -> InputError:
        """An error at a key path of the file (a tuple) or at an override (its name)."""
        if isinstance(at, str):
            return InputError(message, file=self.doc.name, key=f"override {at}")
        return self.error(message, *at)

    def value_at(self, name: str):
        """Where a defaults entry came from: its key path, or its override name."""
        return self.where[name] if self.where.get(name) is not None else name

    def mapping(self, *key_path) -> dict:
        value = self.data
        for part in key_path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error("must be a mapping (key: value)", *key_path)
        return value

    def check_keys(self, allowed, *key_path):
        for key in self.mapping(*key_path):
            if key not in allowed:
                raise self.error(f"unknown key '{shown_key(key)}' (allowed: "
                                 f"{', '.join(allowed)})",
                                 *key_path, key)

    # ------------------------------------------------------------------ top level
    def fill(self, model: Model) -> None:
        """Set every attribute the document defines on ``model``, under construction."""
        self.check_keys(TOP_LEVEL_KEYS)
        name = self.data.get("name", Path(self.doc.name).stem)
        if not isinstance(name, str) or not name:
            raise self.error("must be a non-empty string", "name")
        model.name = name
        model.description = str(self.data.get("description", ""))
        if "equations" not in self.data:
            raise self.error("missing required key 'equations' (Brian2 equations for one "
                             "unit)", line=1)
        self.read_structure(model)
        self.populations = self.read_populations(model)
        model.populations = self.populations
        equations, self.lines = self.parse_equations()
        self.read_flags(equations)
        model.couplings = self.read_couplings(equations)
        for name in [*equations.names, *model.couplings]:
            if len(name) > MAX_NAME_CHARS:
                at = ("couplings", name) if name in model.couplings else ("equations",)
                raise self.error(f"the name '{name[:40]}...' is longer than {MAX_NAME_CHARS} "
                                 "characters (result files could not hold it)", *at,
                                 line=self.lines.get(name))
        model.equations = self.declare_targets(equations, model.couplings)
        model.readout = self.read_readout(model.equations)
        if model.readout is None and model.n_outputs:
            raise self.fail(f"n_outputs = {model.n_outputs} but the model has no readout",
                            self.value_at("n_outputs"))
        self.check_identifiers_and_units(model.equations, model.method)
        model.state_names = tuple(sorted(model.equations.diff_eq_names))
        if not model.state_names:
            raise self.error("the equations need at least one differential equation "
                             "('dx/dt = ... : unit')", "equations")
        _SympyForms(self, model.equations, model.method).fill(model)
        model.params = self.read_params(model)
        model.initial = self.read_initial(model.equations)

    def read_structure(self, model: Model) -> None:
        defaults = self.mapping("defaults")
        for key, value in self.overrides.items():
            if not _is_identifier(key):
                raise InputError(f"invalid override name '{key}'", file=self.doc.name)
        self.values = {**defaults, **self.overrides}
        self.where = {key: (("defaults", key) if key not in self.overrides else None)
                      for key in self.values}

        def setting(key, default):
            return self.values.get(key, default)

        def located(message, key):
            return self.fail(message, self.value_at(key))

        for key in ("n_units", "n_inputs", "n_outputs"):
            value = setting(key, {"n_units": None, "n_inputs": 0, "n_outputs": 0}[key])
            minimum = 1 if key == "n_units" else 0
            if value is None:
                raise self.error("missing required key 'n_units'", "defaults")
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise located(f"must be an integer >= {minimum}, got {value!r}", key)
            setattr(model, key, value)
        if "dt" not in self.values:
            raise self.error("missing required key 'dt' (the time step, e.g. '1 ms')",
                             "defaults")
        try:
            model.dt = parse_quantity(self.values["dt"], brian2.second.dim)
        except ValueError as error:
            raise located(str(error), "dt") from None
        if not model.dt > 0:
            raise located(f"the time step must be positive, got {self.values['dt']!r}", "dt")
        model.method = setting("method", "euler")
        if model.method not in METHODS:
            raise located(f"unknown method {model.method!r} (known: {', '.join(METHODS)})",
                          "method")

    def read_populations(self, model: Model) -> tuple[Population, ...]:
        spec = self.mapping("populations")
        populations, start, cumulative = [], 0, 0.0
        for name, entry in spec.items():
            if not _is_identifier(name):
                raise self.error("a population name must be an identifier", "populations",
                                 name)
            if not isinstance(entry, dict):
                entry = {"fraction": entry}
            else:
                self.check_keys(POPULATION_KEYS, "populations", name)
            fraction = entry.get("fraction")
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                    or not 0 < fraction <= 1:
                raise self.error("'fraction' must be a number in (0, 1]", "populations", name)
            cumulative += fraction
            stop = int(round(cumulative * model.n_units))
            if stop <= start:
                raise self.error(f"fraction {fraction} of {model.n_units} units is empty",
                                 "populations", name)
            sign = entry.get("sign")
            if sign is not None and sign not in (1, -1):
                raise self.error("'sign' must be 1 (excitatory) or -1 (inhibitory)",
                                 "populations", name, "sign")
            populations.append(Population(name, start, stop, sign))
            start = stop
        if populations and abs(cumulative - 1.0) > 1e-9:
            raise self.error(f"population fractions sum to {cumulative:g}, not 1", "populations")
        return tuple(populations)

    # ------------------------------------------------------------------ equations
    def parse_equations(self) -> tuple[Equations, dict[str, int]]:
        text = self.data["equations"]
        if not isinstance(text, str) or not text.strip():
            raise self.error("must be a (multi-line) string of Brian2 equations", "equations")
        if len(text) > MAX_EQUATIONS_CHARS:
            raise self.error(f"the equations are longer than {MAX_EQUATIONS_CHARS} characters",
                             "equations")
        first = self.doc.text_start_line(("equations",))
        lines = {}
        for offset, line in enumerate(text.split("\n")):
            code = line.split("#", 1)[0].strip()
            if not code:
                continue
            try:
                for fragment in _expression_and_unit(code):
                    check_expression(fragment)
            except ExpressionTooLarge as error:
                raise self.error(f"equation too large to analyse: {error}", "equations",
                                 line=first + offset) from None
            try:
                single = Equations(code)
            except Exception as error:  # Brian2 raises several types for a bad equation
                raise self.error(f"cannot parse equation '{code}': {_reason(error)}",
                                 "equations", line=first + offset) from None
            for name in single.names:
                lines[name] = first + offset
        try:
            equations = Equations(text)
        except Exception as error:
            raise self.error(f"invalid equations: {_reason(error)}", "equations") from None
        return equations, lines

    def equation_error(self, message: str, name: str) -> InputError:
        return self.error(message, "equations", line=self.lines.get(name))

    def read_flags(self, equations: Equations) -> None:
        self.trainable_flags = {eq.varname for eq in equations.values()
                                if "trainable" in eq.flags}
        for eq in equations.values():
            unknown = set(eq.flags) - ALLOWED_FLAGS[eq.type]
            if unknown:
                allowed = ALLOWED_FLAGS[eq.type]
                raise self.equation_error(
                    f"flag(s) {', '.join(sorted(unknown))} not supported on '{eq.varname}' "
                    f"(allowed: {', '.join(sorted(allowed)) or 'none'})", eq.varname)

    def read_couplings(self, equations: Equations) -> dict[str, Coupling]:
        couplings, targets = {}, {}
        for name, spec in self.mapping("couplings").items():
            key = ("couplings", name)
            if not _is_identifier(name):
                raise self.error("a coupling name must be an identifier", *key)
            if name in equations.names or name in (schema.READOUT_WEIGHT, schema.READOUT_BIAS,
                                                   INPUT_SOURCE):
                raise self.error(f"the name '{name}' is already used", *key)
            if not isinstance(spec, dict):
                raise self.error("must be a mapping with 'source' and 'target'", *key)
            self.check_keys(COUPLING_KEYS, *key)
            for required in ("source", "target"):
                if required not in spec:
                    raise self.error(f"missing required key '{required}'", *key)
            source, target = spec["source"], spec["target"]
            if source != INPUT_SOURCE and (source not in equations.names
                                           or equations[source].type == PARAMETER):
                raise self.error(
                    f"source '{source}' is not a state variable or subexpression of the "
                    f"equations (or '{INPUT_SOURCE}')", *key, "source")
            if not _is_identifier(target):
                raise self.error(f"target '{target}' is not a valid variable name", *key,
                                 "target")
            if target in equations.names and (equations[target].type != PARAMETER
                                              or equations[target].flags):
                raise self.error(f"target '{target}' must be a plain parameter of the "
                                 f"equations ('{target} : unit'), not a "
                                 f"{equations[target].type}", *key, "target")
            if target in targets:
                raise self.error(f"target '{target}' is already the target of "
                                 f"'{targets[target]}' (one coupling per target)", *key,
                                 "target")
            if target not in equations.names:
                self.check_target_is_used(equations, target, *key)
            source_dim = DIMENSIONLESS if source == INPUT_SOURCE else equations[source].dim
            if target in equations.names and equations[target].dim is not source_dim:
                raise self.error(f"unit mismatch: target '{target}' has unit "
                                 f"{unit_string(equations[target].dim)} but W @ {source} has "
                                 f"unit {unit_string(source_dim)}", *key, "target")
            targets[target] = name
            couplings[name] = Coupling(name, source, target)
        return couplings

    def check_target_is_used(self, equations: Equations, target: str, *key) -> None:
        used = set().union(*(eq.identifiers for eq in equations.values()))
        if target not in used:
            raise self.error(f"target '{target}' does not appear in the equations", *key,
                             "target")

    def declare_targets(self, equations: Equations, couplings: Mapping[str, Coupling]):
        """Strip bioplast flags and declare coupling targets as Brian2 parameters."""
        declared = []
        for eq in equations.values():
            flags = [f for f in eq.flags if f not in BIOPLAST_FLAGS]
            declared.append(SingleEquation(eq.type, eq.varname, eq.dim, eq.var_type, eq.expr,
                                           flags))
        for coupling in couplings.values():
            if coupling.target not in equations.names:
                dim = DIMENSIONLESS if coupling.source == INPUT_SOURCE \
                    else equations[coupling.source].dim
                declared.append(SingleEquation(PARAMETER, coupling.target, dim))
        return Equations(declared)

    def read_readout(self, equations: Equations) -> Readout | None:
        spec = self.data.get("readout")
        if spec is None:
            return None
        if not isinstance(spec, dict):
            raise self.error("must be a mapping with 'source'", "readout")
        self.check_keys(READOUT_KEYS, "readout")
        source = spec.get("source")
        if source is None:
            raise self.error("missing required key 'source'", "readout")
        if source not in equations.names or equations[source].type == PARAMETER:
            raise self.error(f"source '{source}' is not a state variable or subexpression",
                             "readout", "source")
        activation = spec.get("activation", "identity")
        if activation not in READOUT_ACTIVATIONS:
            raise self.error(f"unknown activation {activation!r} (known: "
                             f"{', '.join(READOUT_ACTIVATIONS)})", "readout", "activation")
        bias = spec.get("bias", True)
        if not isinstance(bias, bool):
            raise self.error("must be true or false", "readout", "bias")
        if activation != "identity" and equations[source].dim is not DIMENSIONLESS:
            raise self.error(f"activation '{activation}' needs a dimensionless source; "
                             f"'{source}' has unit {unit_string(equations[source].dim)}",
                             "readout", "activation")
        return Readout(source, activation, bias)

    def check_identifiers_and_units(self, equations: Equations, method: str) -> None:
        dims = {"t": brian2.second.dim, "dt": brian2.second.dim}
        dims.update(equations.dimensions)
        for eq in equations.values():
            if eq.expr is None:
                continue
            variables = {name: Quantity(1, dim=dim) for name, dim in dims.items()}
            for identifier in sorted(eq.identifiers):
                if identifier in variables:
                    continue
                if identifier == "xi" or identifier.startswith("xi_"):
                    if eq.type != DIFFERENTIAL_EQUATION:
                        raise self.equation_error(
                            f"white noise '{identifier}' may only appear in a differential "
                            "equation", eq.varname)
                    if method != "euler":
                        raise self.equation_error(
                            f"white noise '{identifier}' needs method 'euler' "
                            f"(Euler-Maruyama), not '{method}'", eq.varname)
                    variables[identifier] = Quantity(1, dim=brian2.second.dim ** -0.5)
                elif identifier in DEFAULT_FUNCTIONS:
                    if identifier not in SUPPORTED_FUNCTIONS:
                        raise self.equation_error(
                            f"function '{identifier}' is not supported (supported: "
                            f"{', '.join(sorted(SUPPORTED_FUNCTIONS))})", eq.varname)
                    if identifier in RANDOM_FUNCTIONS and "constant over dt" not in eq.flags:
                        raise self.equation_error(
                            f"{identifier}() may only appear in a subexpression flagged "
                            "'(constant over dt)', e.g. 'noise = sigma*randn() : 1 (constant "
                            "over dt)'; for white noise use xi", eq.varname)
                    variables[identifier] = DEFAULT_FUNCTIONS[identifier]
                elif identifier in DEFAULT_CONSTANTS:
                    variables[identifier] = DEFAULT_CONSTANTS[identifier]
                elif identifier in DEFAULT_UNITS:
                    variables[identifier] = DEFAULT_UNITS[identifier]
                elif identifier in ("i", "N", "t_in_timesteps", "lastspike", "not_refractory"):
                    raise self.equation_error(
                        f"'{identifier}' is not supported in bioplast equations", eq.varname)
                else:
                    raise self.equation_error(
                        f"unknown variable '{identifier}' in the equation of '{eq.varname}' "
                        "(declare it, e.g. '" + identifier + " : 1', or fix the name)",
                        eq.varname)
            expected = eq.dim / brian2.second.dim if eq.type == DIFFERENTIAL_EQUATION \
                else eq.dim
            try:
                check_dimensions(str(eq.expr), expected, variables)
            except brian2.DimensionMismatchError as error:
                raise self.equation_error(f"unit mismatch in the equation of '{eq.varname}': "
                                          f"{_reason(error)}", eq.varname) from None
            except (SyntaxError, ValueError, KeyError, TypeError) as error:
                raise self.equation_error(f"invalid expression for '{eq.varname}': "
                                          f"{_reason(error)}", eq.varname) from None

    # ------------------------------------------------------------------ parameters
    def read_params(self, model: Model) -> dict[str, ParamSpec]:
        equations = model.equations
        targets = {c.target for c in model.couplings.values()}
        declared = [name for name in sorted(equations.parameter_names) if name not in targets]
        section = self.mapping("parameters")
        for name in section:
            if name not in declared:
                raise self.error(f"'{name}' is not a parameter of the equations (parameters: "
                                 f"{', '.join(declared) or 'none'})", "parameters", name)
            self.check_keys(PARAMETER_KEYS, "parameters", name)
        for name in self.values:
            if name not in STRUCTURE_KEYS and name not in declared:
                raise self.fail(f"'{name}' is neither a setting ({', '.join(STRUCTURE_KEYS)}) "
                                f"nor a parameter of the equations "
                                f"({', '.join(declared) or 'none'})", self.value_at(name))
        specs = {}
        for name in declared:
            eq = equations[name]
            entry = self.mapping("parameters", name)
            key = ("parameters", name)
            dims = () if "shared" in eq.flags else (schema.UNIT,)
            init_spec, init_at = entry.get("init"), (*key, "init")
            if name in self.values:
                if "init" in entry and self.where.get(name) is not None:
                    raise self.error(f"'{name}' has a value in defaults and an init in "
                                     "parameters: keep one", *self.where[name])
                init_spec, init_at = self.values[name], self.value_at(name)
            if init_spec is None:
                if eq.dim is not DIMENSIONLESS:
                    raise self.equation_error(
                        f"parameter '{name}' has unit {unit_string(eq.dim)} and no value: give "
                        f"defaults.{name} or parameters.{name}.init", name)
                init_spec = 0
            init = self.initializer(init_spec, eq.dim, init_at, per_unit=bool(dims),
                                    matrices=self.matrix_names(model))
            bounds = {}
            for bound in ("min", "max"):
                if bound in entry:
                    try:
                        bounds[bound] = parse_quantity(entry[bound], eq.dim)
                    except ValueError as error:
                        raise self.error(str(error), *key, bound) from None
            if bounds.get("min", -np.inf) > bounds.get("max", np.inf):
                raise self.error("min is above max", *key)
            spec = ParamSpec(name, dims, unit_string(eq.dim), init, False, **bounds)
            drawn = init.bounded_range()
            if drawn is not None and not (bounds.get("min", -np.inf) <= drawn[0]
                                          and drawn[1] <= bounds.get("max", np.inf)):
                low, high = drawn
                values = with_unit(low, spec.unit) if low == high else \
                    f"{low:g} to {with_unit(high, spec.unit)}"
                raise self.fail(f"the initial values {values} are outside the bounds of "
                                f"'{name}' ({spec.describe_constraints()})", init_at)
            trainable = entry.get("trainable", name in self.trainable_flags)
            if not isinstance(trainable, bool):
                raise self.error("must be true or false", *key, "trainable")
            specs[name] = ParamSpec(name, dims, unit_string(eq.dim), init, trainable, **bounds)
        for coupling in model.couplings.values():
            specs[coupling.name] = self.coupling_spec(model, coupling)
        if model.readout is not None:
            specs.update(self.readout_specs(model))
        return specs

    def initializer(self, spec, dim, at, *, matrix: bool = False, per_unit: bool = True,
                    matrices: tuple[str, ...] | None = None) -> Initializer:
        """Parse an init spec found ``at`` a key path (tuple) or override (name); see
        `parse_initializer` for the keywords."""
        try:
            return parse_initializer(spec, dim, tuple(p.name for p in self.populations),
                                     matrix=matrix, per_unit=per_unit, matrices=matrices)
        except ValueError as error:
            raise self.fail(str(error), at) from None

    @staticmethod
    def matrix_names(model: Model) -> tuple[str, ...]:
        """The matrices whose fan-in an initializer may take (``coupling:``): the
        couplings and the readout's weights."""
        return (*model.couplings, *([schema.READOUT_WEIGHT] if model.readout else []))

    def coupling_spec(self, model: Model, coupling: Coupling) -> ParamSpec:
        key = ("couplings", coupling.name)
        entry = self.mapping(*key)
        from_input = coupling.source == INPUT_SOURCE
        dims = (schema.UNIT, schema.INPUT if from_input else schema.PRESYNAPTIC)
        init = self.initializer(entry.get("init", "xavier_uniform"), DIMENSIONLESS,
                                (*key, "init"), matrix=True, matrices=self.matrix_names(model))
        flags = {}
        for flag in ("dale", "trainable"):
            if flag in entry and not isinstance(entry[flag], bool):
                raise self.error("must be true or false", *key, flag)
        autapses = entry.get("autapses", True)
        if not isinstance(autapses, bool) and autapses != AUTAPSES_START_AT_ZERO:
            raise self.error(f"must be true (trained), false (kept at zero) or "
                             f"{AUTAPSES_START_AT_ZERO} (zero at initialisation, trained "
                             f"afterwards), got {autapses!r:.60}", *key, "autapses")
        if from_input and ("autapses" in entry or entry.get("dale")):
            raise self.error("'autapses' and 'dale' apply to couplings between units, not "
                             "from the input", *key)
        if entry.get("dale"):
            signs = [p.sign for p in self.populations]
            if not signs or None in signs:
                raise self.error("dale: true needs populations with a sign each "
                                 "(populations: {E: {fraction: 0.8, sign: 1}, ...})", *key,
                                 "dale")
            flags["column_sign"] = tuple(float(p.sign) for p in self.populations
                                         for _ in range(p.start, p.stop))
        return ParamSpec(coupling.name, dims, "1", init, entry.get("trainable", True),
                         zero_diagonal=autapses is False,
                         zero_diagonal_at_init=autapses == AUTAPSES_START_AT_ZERO, **flags)

    def readout_specs(self, model: Model) -> dict[str, ParamSpec]:
        entry = self.mapping("readout")
        trainable = entry.get("trainable", True)
        if not isinstance(trainable, bool):
            raise self.error("must be true or false", "readout", "trainable")
        specs = {schema.READOUT_WEIGHT: ParamSpec(
            schema.READOUT_WEIGHT, (schema.OUTPUT, schema.UNIT), "1",
            self.initializer(entry.get("init", "xavier_uniform"), DIMENSIONLESS,
                             ("readout", "init"), matrix=True,
                             matrices=self.matrix_names(model)), trainable)}
        if model.readout.bias:
            dim = model.equations.dimensions[model.readout.source]
            specs[schema.READOUT_BIAS] = ParamSpec(
                schema.READOUT_BIAS, (schema.OUTPUT,), unit_string(dim),
                self.initializer(entry.get("bias_init", "zeros"), dim,
                                 ("readout", "bias_init"), per_unit=False,
                                 matrices=self.matrix_names(model)), trainable)
        elif "bias_init" in entry:
            raise self.error("bias_init given but bias: false", "readout", "bias_init")
        return specs

    def read_initial(self, equations: Equations) -> dict[str, Initializer]:
        initial = {}
        for name, spec in self.mapping("initial").items():
            if name not in equations.diff_eq_names:
                raise self.error(f"'{name}' is not a state variable (states: "
                                 f"{', '.join(sorted(equations.diff_eq_names))})",
                                 "initial", name)
            initial[name] = self.initializer(spec, equations[name].dim, ("initial", name))
        return initial
