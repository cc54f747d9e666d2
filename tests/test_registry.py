"""Registries, and the reading of what bioplast's classes declare from their source
(`bioplast.class_source`), which lets ``bioplast list`` answer without torch or Brian2."""

import importlib
import sys
import textwrap

import pytest

import bioplast
from bioplast import class_source, registry
from bioplast.errors import InputError
from bioplast.registry import (REGULARIZERS, RULES, TASKS, Registry, Summary, class_summary,
                               source_summary)


@pytest.mark.parametrize("built_in", [TASKS, RULES, REGULARIZERS], ids=lambda r: r.kind)
def test_every_built_in_is_read_from_its_source_as_its_class_declares(built_in):
    """For each rule, task and regularizer: read without importing (so `bioplast list`
    loads no torch), and the same description and options as the imported class has."""
    for name in built_in.names():
        cls = built_in.get(name)
        read = source_summary(f"{cls.__module__}:{cls.__qualname__}")
        assert read is not None, f"{name}: bioplast list would import {cls.__module__}"
        assert read == class_summary(cls), name
        assert read.description and read.options


def test_the_registries_the_library_uses_list_the_same_entries():
    """The listing's registries and the ones the training code looks names up in hold the
    same classes under the same names."""
    from bioplast.backends import BACKENDS
    from bioplast.regularizers import REGULARIZERS as used_regularizers
    from bioplast.rules import RULES as used_rules
    from bioplast.tasks import TASKS as used_tasks
    for listed, used in ((TASKS, used_tasks), (RULES, used_rules),
                         (REGULARIZERS, used_regularizers), (registry.BACKENDS, BACKENDS)):
        assert listed.names() == used.names()
        assert all(listed.get(name) is used.get(name) for name in listed.names())


def test_unknown_names_are_input_errors_listing_the_known_ones():
    with pytest.raises(InputError, match="unknown rule 'nope' .*bptt"):
        RULES.summary("nope")


@pytest.fixture
def package_module(tmp_path, monkeypatch):
    """Write a module ``bioplast._probe_N`` into a scratch directory that the source
    reading (as the package's directory) and the import system (on the package's path)
    both see; returns ``write(text) -> "bioplast._probe_N"``."""
    monkeypatch.setattr(class_source, "PACKAGE_DIR", tmp_path)
    monkeypatch.setattr(bioplast, "__path__", [*bioplast.__path__, str(tmp_path)])
    written = []

    def write(text: str) -> str:
        name = f"_probe_{len(written)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        written.append(f"bioplast.{name}")
        importlib.invalidate_caches()
        class_source.Source.of.cache_clear()
        return f"bioplast.{name}"
    yield write
    class_source.Source.of.cache_clear()
    for name in written:
        sys.modules.pop(name, None)


def _imported(module: str, name: str):
    return getattr(importlib.import_module(module), name)


HEADER = """\
    from __future__ import annotations
    from abc import ABC
    from typing import ClassVar, Literal
    import pydantic

    class Inner(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
        name: Literal["a", "b"] = "a"
        rate: float = pydantic.Field(1e-3, gt=0)
        pair: list[float] = pydantic.Field(default_factory=lambda: [0.5, 0.25])

        @pydantic.model_validator(mode="after")
        def _check(self):
            return self

    class BaseConfig(pydantic.BaseModel):
        inner: Inner = Inner()
        weight: float = pydantic.Field(description="required")
        first: int = 1

    class Base(ABC):
        description: ClassVar[str] = ""
        Config: ClassVar[type]
"""


def test_source_reading_follows_inheritance_fields_and_nested_defaults(package_module):
    module = package_module(HEADER + """
    class ThingConfig(BaseConfig):
        first: int = 5                      # redefined: keeps its place
        mode: str | None = pydantic.Field(None, description="x")
        span: tuple = (1, -2.5)
        table: dict = {"k": [True, None]}
        hidden: ClassVar[int] = 3
        _private: int = 4

    class Thing(Base):
        '''The thing.

        More text.'''
        Config = ThingConfig
    """)
    read = source_summary(f"{module}:Thing")
    assert read == Summary("The thing.", {
        "inner": '{"name": "a", "rate": 0.001, "pair": [0.5, 0.25]}',
        "weight": "(required)", "first": "5", "mode": "null", "span": "[1, -2.5]",
        "table": '{"k": [true, null]}'})
    assert read == class_summary(_imported(module, "Thing"))


@pytest.mark.parametrize("body", [
    "class ThingConfig(BaseConfig):\n    size: int = 2 * 3\n",            # computed
    "class ThingConfig(BaseConfig):\n    items: list = pydantic.Field(default_factory=list)\n",
    "class ThingConfig(BaseConfig):\n    limit: float = float('inf')\n",  # a call
    "class ThingConfig(BaseConfig):\n    if True:\n        size: int = 2\n",  # a block
    "class Other(pydantic.BaseModel):\n    x: int = 1\n\n"
    "    @pydantic.model_validator(mode='before')\n    @classmethod\n"
    "    def _fill(cls, data):\n        return {'x': 7}\n\n"
    "class ThingConfig(BaseConfig):\n    other: Other = Other()\n",       # changes a value
    "class Other(pydantic.BaseModel):\n    x: int = 1\n\n"
    "    @pydantic.computed_field\n    @property\n    def y(self) -> int:\n"
    "        return 2\n\n"
    "class ThingConfig(BaseConfig):\n    other: Other = Other()\n",       # adds to the dump
], ids=["computed", "factory-list", "call", "block", "before-validator", "computed-field"])
def test_what_the_reading_does_not_follow_is_imported(package_module, body):
    module = package_module(HEADER + textwrap.indent(body, "    ") + """
    class Thing(Base):
        description = "a thing"
        Config = ThingConfig
    """)
    target = f"{module}:Thing"
    assert source_summary(target) is None
    listing = Registry("thing", "bioplast.test_no_such_plugins")
    listing.register("thing", target)
    assert listing.summary("thing") == class_summary(_imported(module, "Thing"))
    assert listing.summary("thing").description == "a thing"


def test_class_decorators_dynamic_descriptions_and_outside_modules_are_not_read(
        package_module):
    module = package_module(HEADER + """
    def tag(cls):
        return cls

    @tag
    class Decorated(Base):
        description = "decorated"
        Config = BaseConfig

    class Dynamic(Base):
        Config = BaseConfig

        @property
        def description(self):
            return "dynamic"

    class NoConfig(Base):
        description = "none"
    """)
    for name in ("Decorated", "Dynamic", "NoConfig"):
        assert source_summary(f"{module}:{name}") is None, name
    assert source_summary("json:JSONDecoder") is None
    assert source_summary("bioplast.no_such_module:Thing") is None
