"""Registries: name -> class for backends, rules, tasks and regularizers.

Entries are classes or lazy ``"module:attribute"`` strings, so that listing names imports
nothing heavy; `Registry.summary` gives an entry's description and its options with their
defaults (what ``bioplast list`` prints), for bioplast's own entries read from their source
without importing torch or Brian2 (`bioplast.class_source`). Plug-ins from other packages
register through entry points in the group given to the registry (e.g.
``bioplast.backends``). A miss raises an `InputError` listing the known names.

The built-in registries (`BACKENDS`, `RULES`, `TASKS`, `REGULARIZERS`) are defined here
with their entries, so that the command line lists them from this light module.
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .errors import InputError

class _Required:
    """The default of a config field that has none (`option_text`: ``(required)``)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True)
class Summary:
    """What ``bioplast list`` says about a rule, task or regularizer: its one-line
    ``description`` and ``options``, each config field with its default as `option_text`."""

    description: str
    options: dict[str, str]


def option_text(default) -> str:
    """A config field's default as short JSON text (a nested config as its fields), or
    ``(required)``."""
    if default is REQUIRED:
        return "(required)"
    if hasattr(default, "model_dump"):
        default = default.model_dump(mode="json")
    return json.dumps(default)


def class_summary(cls) -> Summary:
    """The `Summary` of an imported class: its ``description`` (or the first line of its
    docstring) and the fields of its pydantic ``Config``."""
    description = getattr(cls, "description", "") or \
        (cls.__doc__ or "").strip().split("\n")[0]
    options = {}
    for key, field in cls.Config.model_fields.items():
        default = REQUIRED if field.is_required() else \
            field.default_factory() if field.default_factory is not None else field.default
        options[key] = option_text(default)
    return Summary(description, options)


def source_summary(target: str) -> Summary | None:
    """The `Summary` of bioplast's own class ``"module:Class"``, read from its source
    without importing it (`bioplast.class_source.read_summary`); None for a class of
    another package or one the reading does not follow."""
    if target.partition(".")[0] != __name__.partition(".")[0]:
        return None
    from .class_source import read_summary
    read = read_summary(target)
    if read is None:
        return None
    description, defaults = read
    return Summary(description, {key: option_text(default) for key, default in defaults.items()})


@functools.lru_cache(maxsize=1)
def installed_entry_points():
    """The entry points of the installed distributions, read once (reading them scans
    every distribution's metadata)."""
    return entry_points()


class Registry:
    """Named classes of one kind (``backend``, ``rule``, ...)."""

    def __init__(self, kind: str, entry_point_group: str):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Any] = {}
        self._plugins_loaded = False

    def register(self, name: str, target: Any = None):
        """Register ``target`` (a class or ``"module:attribute"``) under ``name``; without a
        target, return a class decorator."""
        if target is None:
            def decorator(cls):
                self._entries[name] = cls
                return cls
            return decorator
        self._entries[name] = target
        return target

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry in installed_entry_points().select(group=self.entry_point_group):
            self._entries.setdefault(entry.name, entry.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def _target(self, name: str):
        self._load_plugins()
        if name not in self._entries:
            raise InputError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})")
        return self._entries[name]

    def get(self, name: str):
        """The class registered as ``name``."""
        target = self._target(name)
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
            self._entries[name] = target
        return target

    def summary(self, name: str) -> Summary:
        """The description and options of the class registered as ``name`` (a class with a
        pydantic ``Config``). bioplast's own classes not yet imported are read from their
        source (`bioplast.class_source.read_summary`: no torch, no Brian2); the others,
        and those the reading cannot follow, are imported."""
        target = self._target(name)
        summary = source_summary(target) if isinstance(target, str) else None
        return summary if summary is not None else class_summary(self.get(name))


BACKENDS = Registry("backend", "bioplast.backends")
BACKENDS.register("torch", "bioplast.backends.torch:TorchBackend")
BACKENDS.register("brian2", "bioplast.backends.brian2:Brian2Backend")

RULES = Registry("rule", "bioplast.rules")
RULES.register("bptt", "bioplast.rules.bptt:BPTT")
RULES.register("eprop", "bioplast.rules.eprop:EProp")
RULES.register("rflo", "bioplast.rules.eprop:RFLO")
RULES.register("node_perturbation", "bioplast.rules.node_perturbation:NodePerturbation")

TASKS = Registry("task", "bioplast.tasks")
TASKS.register("n_parity", "bioplast.tasks.bits:NParity")
TASKS.register("n_dms", "bioplast.tasks.bits:NDMS")
TASKS.register("delayed_cue", "bioplast.tasks.delayed_cue:DelayedCue")
TASKS.register("flip_flop", "bioplast.tasks.flip_flop:FlipFlop")
TASKS.register("delayed_addition", "bioplast.tasks.report:DelayedAddition")
TASKS.register("evidence_accumulation", "bioplast.tasks.report:EvidenceAccumulation")
TASKS.register("neurogym", "bioplast.tasks.neurogym_env:NeuroGym")

REGULARIZERS = Registry("regularizer", "bioplast.regularizers")
REGULARIZERS.register("temporal_consistency", "bioplast.regularizers:TemporalConsistency")
REGULARIZERS.register("activity_l2", "bioplast.regularizers:ActivityL2")
REGULARIZERS.register("weight_l2", "bioplast.regularizers:WeightL2")
