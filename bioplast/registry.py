"""Registries: name -> class for backends (and, later, rules, tasks, regularizers).

Entries are classes or lazy ``"module:attribute"`` strings (so that listing names imports
nothing heavy). Plug-ins from other packages register through entry points in the group
given to the registry (e.g. ``bioplast.backends``). A miss raises an `InputError` listing
the known names.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .errors import InputError


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
        for entry in entry_points(group=self.entry_point_group):
            self._entries.setdefault(entry.name, entry.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def get(self, name: str):
        """The class registered as ``name``."""
        self._load_plugins()
        if name not in self._entries:
            raise InputError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})")
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = getattr(importlib.import_module(module), attribute)
            self._entries[name] = target
        return target
