"""What a class of bioplast declares, read from its source file without importing it.

``bioplast list`` shows every rule, task and regularizer with its description and the
options of its pydantic ``Config`` with their defaults; importing the modules that define
them loads torch and Brian2 (seconds). `read_summary` reads the same from the source with
`ast`: the class's ``description`` (else the first line of its docstring), found along its
base classes, and its ``Config``'s fields in pydantic's order (the bases' first) with their
defaults where they are written as literals: ``x: int = 2``, ``pydantic.Field(0.1, ...)``,
``pydantic.Field(default_factory=lambda: [0.9, 0.999])``, or a nested config's defaults
(``optimizer: OptimizerConfig = OptimizerConfig()``). Whatever it does not follow (a
computed default, a class decorator, a metaclass, ``__init_subclass__``, two base classes,
a statement other than assignments and functions in a class body, a nested config with
validators or serializers that could change its values, ...) makes it return None, and the
caller imports the class (`bioplast.registry.class_summary`). Only modules of the bioplast
package are read; tests check the reading against the imported classes for every built-in
entry.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .registry import REQUIRED

PACKAGE = __name__.partition(".")[0]
PACKAGE_DIR = Path(__file__).resolve().parent

#: base classes that declare none of the attributes read here
TERMINAL_BASES = frozenset({"abc.ABC", "builtins.object", "pydantic.BaseModel",
                            "pydantic.main.BaseModel"})
PYDANTIC_BASES = frozenset({"pydantic.BaseModel", "pydantic.main.BaseModel"})
FIELD = frozenset({"pydantic.Field", "pydantic.fields.Field"})
CONFIG_DICT = frozenset({"pydantic.ConfigDict", "pydantic.config.ConfigDict"})
CLASS_VAR = frozenset({"typing.ClassVar", "typing_extensions.ClassVar"})
#: what a nested config (an instance as a default, dumped as JSON) may declare: settings,
#: Field arguments and validators that cannot change the values of its defaults
NESTED_SETTINGS = frozenset({"extra", "frozen", "strict", "allow_inf_nan"})
NESTED_FIELD_ARGUMENTS = frozenset({"default", "default_factory", "description", "title",
                                    "examples", "gt", "ge", "lt", "le", "multiple_of",
                                    "min_length", "max_length", "pattern", "strict",
                                    "allow_inf_nan"})
NESTED_DECORATORS = frozenset({"pydantic.field_validator", "builtins.property",
                               "builtins.staticmethod", "builtins.classmethod"})
MODEL_VALIDATOR = frozenset({"pydantic.model_validator"})


class Unfollowed(Exception):
    """The source says something this reading does not follow: import the class."""


def read_summary(target: str) -> tuple[str, dict[str, Any]] | None:
    """``(description, {option: default or REQUIRED})`` of the class ``"module:Class"``
    (a bioplast module), read from its source; None where the reading does not follow it.
    Defaults are JSON values as `bioplast.registry.option_text` shows them (a nested
    config as a dict of its fields)."""
    module, _, name = target.partition(":")
    try:
        cls = Source.of(module).lookup(name)
        if not isinstance(cls, Class):
            raise Unfollowed(f"{target} is not a class")
        chain = cls.chain()
        found = chain_value(chain, "description")
        description = found[0] if found else ast.Constant("")
        if not (isinstance(description, ast.Constant) and isinstance(description.value, str)):
            raise Unfollowed("description is not a string")
        description = description.value or \
            (ast.get_docstring(cls.node, clean=False) or "").strip().split("\n")[0]
        found = chain_value(chain, "Config")
        if found is None:
            raise Unfollowed("no Config")
        config = found[1].source.resolve(found[0])
        if not isinstance(config, Class):
            raise Unfollowed("Config is not a class of the package")
        return description, config.fields(nested=False)
    except (Unfollowed, OSError, SyntaxError, ValueError, TypeError, RecursionError):
        return None


@dataclass(frozen=True)
class External:
    """A name from outside the package, e.g. ``pydantic.BaseModel``."""

    qualname: str


@dataclass(frozen=True)
class Module:
    """A module, imported as a name (``import pydantic``)."""

    name: str


class Source:
    """A parsed module of the package and what its top-level statements bind."""

    def __init__(self, module: str):
        parts = module.split(".")
        if parts[0] != PACKAGE:
            raise Unfollowed(f"{module} is not a module of {PACKAGE}")
        path = PACKAGE_DIR.joinpath(*parts[1:])
        if (path / "__init__.py").is_file():
            self.package, path = module, path / "__init__.py"
        elif path.with_suffix(".py").is_file():
            self.package, path = module.rpartition(".")[0], path.with_suffix(".py")
        else:
            raise Unfollowed(f"no source file for {module}")
        self.module = module
        self.bindings: dict[str, Any] = {}
        self.bind_all(ast.parse(path.read_bytes(), str(path)).body)

    def bind_all(self, statements: list[ast.stmt]) -> None:
        """Record the names that module-level ``statements`` bind (also in if / try /
        with / loop blocks)."""
        for node in statements:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                self.bind(node.name, node)
            elif isinstance(node, ast.ImportFrom):
                origin = self.absolute(node)
                for alias in node.names:
                    self.bind(alias.asname or alias.name, (origin, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.asname or alias.name.partition(".")[0]
                    self.bind(name, Module(alias.name if alias.asname else name))
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for target in [getattr(node, "target", None),
                               *(item.optional_vars for item in getattr(node, "items", []))]:
                    self.bind_targets(target, node)
                for handler in getattr(node, "handlers", []):
                    if handler.name:
                        self.bind(handler.name, handler)
                    self.bind_all(handler.body)
                for block in ("body", "orelse", "finalbody"):
                    self.bind_all(getattr(node, block, []))
            else:
                self.bind_targets(node, node)

    def bind_targets(self, node: ast.AST | None, statement: ast.stmt) -> None:
        """Bind every name that ``node`` stores to ``statement``."""
        for child in ast.walk(node) if node is not None else ():
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                self.bind(child.id, statement)

    @staticmethod
    @lru_cache(maxsize=None)
    def of(module: str) -> "Source":
        """The parsed source of ``module`` (parsed once)."""
        return Source(module)

    def bind(self, name: str, value) -> None:
        # a name bound twice at the top level is not followed
        self.bindings[name] = value if name not in self.bindings else Unfollowed

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module
        parts = self.package.split(".")
        base = parts[:len(parts) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def lookup(self, name: str):
        """What ``name`` is at the top level of this module: a `Class`, an `External`
        name, a `Module` or another statement (an `ast` node)."""
        binding = self.bindings.get(name)
        if binding is None:
            if hasattr(builtins, name):
                return External(f"builtins.{name}")
            raise Unfollowed(f"{name} is not bound in {self.module}")
        if binding is Unfollowed:
            raise Unfollowed(f"{name} is bound twice in {self.module}")
        if isinstance(binding, ast.ClassDef):
            return Class(self, binding)
        if isinstance(binding, tuple):  # from ORIGIN import NAME
            origin, attribute = binding
            if origin.partition(".")[0] != PACKAGE:
                return External(f"{origin}.{attribute}")
            try:
                return Source.of(origin).lookup(attribute)
            except Unfollowed:  # from PACKAGE import SUBMODULE
                Source.of(f"{origin}.{attribute}")
                return Module(f"{origin}.{attribute}")
        return binding

    def resolve(self, expression: ast.expr):
        """What a name or dotted name in this module stands for (see `lookup`)."""
        if isinstance(expression, ast.Name):
            return self.lookup(expression.id)
        if isinstance(expression, ast.Attribute):
            value = self.resolve(expression.value)
            if isinstance(value, Module):
                if value.name.partition(".")[0] != PACKAGE:
                    return External(f"{value.name}.{expression.attr}")
                return Source.of(value.name).lookup(expression.attr)
        raise Unfollowed(f"{ast.unparse(expression)} is not a name")

    def is_external(self, expression: ast.expr, names: frozenset[str]) -> bool:
        """Whether ``expression`` names one of the external ``names``."""
        try:
            resolved = self.resolve(expression)
        except Unfollowed:
            return False
        return isinstance(resolved, External) and resolved.qualname in names


@dataclass(frozen=True)
class Class:
    """A class statement in a module of the package."""

    source: Source
    node: ast.ClassDef

    def chain(self) -> list["Class"]:
        """The class and its base classes in the package, the class first (their MRO when
        each has one base in the package, besides `TERMINAL_BASES`)."""
        chain, cls = [], self
        while True:
            if cls.node.decorator_list or cls.node.keywords:
                raise Unfollowed(f"{cls.node.name} has a decorator or class keywords")
            for statement in cls.node.body:
                if not isinstance(statement, (ast.Expr, ast.Pass, ast.Assign, ast.AnnAssign,
                                              ast.FunctionDef, ast.AsyncFunctionDef)):
                    raise Unfollowed(f"a {type(statement).__name__} in {cls.node.name}")
                if getattr(statement, "name", None) == "__init_subclass__":
                    raise Unfollowed(f"{cls.node.name} defines __init_subclass__")
            chain.append(cls)
            bases = []
            for base in cls.node.bases:
                resolved = cls.source.resolve(base)
                if isinstance(resolved, Class):
                    bases.append(resolved)
                elif not (isinstance(resolved, External)
                          and resolved.qualname in TERMINAL_BASES):
                    raise Unfollowed(f"base {ast.unparse(base)} of {cls.node.name}")
            if not bases:
                return chain
            if len(bases) > 1:
                raise Unfollowed(f"{cls.node.name} has several bases in the package")
            cls = bases[0]

    def is_pydantic_model(self) -> bool:
        return any(self.source.is_external(base, PYDANTIC_BASES) for base in self.node.bases)

    def fields(self, nested: bool) -> dict[str, Any]:
        """The fields of this pydantic model and their defaults (REQUIRED where none), in
        pydantic's order: the bases' first, a redefined field at its first place.
        ``nested``: the model is a default of another one, dumped as JSON, so nothing in it
        may change the values of its defaults."""
        chain = self.chain()
        if not chain[-1].is_pydantic_model():
            raise Unfollowed(f"{self.node.name} is not a pydantic model")
        fields: dict[str, Any] = {}
        for cls in reversed(chain):
            source = cls.source
            for statement in cls.node.body:
                if isinstance(statement, ast.AnnAssign):
                    if not isinstance(statement.target, ast.Name):
                        raise Unfollowed("an annotated attribute that is not a name")
                    name = statement.target.id
                    if name.startswith("_") or is_class_var(source, statement.annotation):
                        continue
                    if statement.value is None and name in fields:
                        raise Unfollowed(f"field {name} annotated again without a default")
                    fields[name] = field_default(source, statement.value, nested)
                elif isinstance(statement, ast.Assign):
                    targets = [t.id for t in statement.targets if isinstance(t, ast.Name)]
                    if targets != ["model_config"] or len(statement.targets) != 1:
                        raise Unfollowed("a class attribute without annotation")
                    if nested:
                        check_nested_settings(source, statement.value)
                elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and nested:
                    for decorator in statement.decorator_list:
                        check_nested_decorator(source, decorator)
        if nested and any(default is REQUIRED for default in fields.values()):
            raise Unfollowed(f"{self.node.name}() lacks required fields")
        return fields


def chain_value(chain: list[Class], attribute: str) -> tuple[ast.expr, Class] | None:
    """The value the first class of ``chain`` that assigns ``attribute`` in its body gives
    it (the last such assignment in that body), and that class; None if none does."""
    for cls in chain:
        found = None
        for statement in cls.node.body:
            if isinstance(statement, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id == attribute for t in statement.targets):
                    found = statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                if isinstance(statement.target, ast.Name) and statement.target.id == attribute:
                    found = statement.value
            elif getattr(statement, "name", None) == attribute:
                raise Unfollowed(f"{attribute} is a function of {cls.node.name}")
        if found is not None:
            return found, cls
    return None


def is_class_var(source: Source, annotation: ast.expr) -> bool:
    """Whether an annotation is ``ClassVar`` or ``ClassVar[...]`` (not a field)."""
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    return source.is_external(annotation, CLASS_VAR)


def field_default(source: Source, value: ast.expr | None, nested: bool):
    """The default a field's assigned ``value`` gives it (REQUIRED for none)."""
    if value is None:
        return REQUIRED
    if isinstance(value, ast.Call):
        if source.is_external(value.func, FIELD):
            keywords = {k.arg: k.value for k in value.keywords}
            if None in keywords or len(value.args) > 1 or (value.args and "default" in keywords):
                raise Unfollowed("Field arguments not followed")
            if nested and not set(keywords) <= NESTED_FIELD_ARGUMENTS:
                raise Unfollowed(f"Field({', '.join(keywords)}) in a nested config")
            default = value.args[0] if value.args else keywords.get("default")
            if default is not None:
                if isinstance(default, ast.Constant) and default.value is Ellipsis:
                    return REQUIRED
                return literal(default)
            factory = keywords.get("default_factory")
            if factory is None:
                return REQUIRED
            if isinstance(factory, ast.Lambda) and not factory.args.args \
                    and not factory.args.vararg and not factory.args.kwarg:
                return literal(factory.body)
            return instance_defaults(source, factory)
        if value.args or value.keywords:
            raise Unfollowed(f"{ast.unparse(value)} is not a literal")
        return instance_defaults(source, value.func)
    return literal(value)


def instance_defaults(source: Source, expression: ast.expr) -> dict[str, Any]:
    """The fields of ``Config()`` (``expression`` names the class) as its JSON dump."""
    cls = source.resolve(expression)
    if not isinstance(cls, Class):
        raise Unfollowed(f"{ast.unparse(expression)} is not a class of the package")
    return cls.fields(nested=True)


def check_nested_settings(source: Source, value: ast.expr) -> None:
    """Unfollowed unless a nested config's ``model_config`` only sets `NESTED_SETTINGS`."""
    if not (isinstance(value, ast.Call) and source.is_external(value.func, CONFIG_DICT)
            and not value.args
            and all(k.arg in NESTED_SETTINGS for k in value.keywords)):
        raise Unfollowed(f"model_config = {ast.unparse(value)} in a nested config")


def check_nested_decorator(source: Source, decorator: ast.expr) -> None:
    """Unfollowed unless a nested config's method decorator is one that cannot change the
    values of its defaults when the config is created: a field validator (defaults are not
    validated), an "after" model validator (it checks the fields), property, staticmethod
    or classmethod (not a computed field, not a serializer)."""
    call = decorator if isinstance(decorator, ast.Call) else None
    function = call.func if call else decorator
    if source.is_external(function, NESTED_DECORATORS):
        return
    modes = [k.value for k in call.keywords if k.arg == "mode"] if call else []
    if source.is_external(function, MODEL_VALIDATOR) and len(modes) == 1 \
            and isinstance(modes[0], ast.Constant) and modes[0].value == "after":
        return
    raise Unfollowed(f"@{ast.unparse(decorator)} in a nested config")


def literal(node: ast.expr):
    """A literal's value if it is JSON data (text, numbers, booleans, None, lists, tuples,
    and mappings with text keys)."""
    value = ast.literal_eval(node)

    def check(item) -> None:
        if isinstance(item, (list, tuple)):
            for element in item:
                check(element)
        elif isinstance(item, dict):
            for key, element in item.items():
                if not isinstance(key, str):
                    raise Unfollowed("a mapping with keys other than text")
                check(element)
        elif item is not None and not isinstance(item, (str, bool, int, float)):
            raise Unfollowed(f"a default of type {type(item).__name__}")
    check(value)
    return value
