"""What each backend offers, declared once: its options and its capabilities.

Light on purpose (no torch, no Brian2): the backend classes (`Backend.option_choices`,
defaults, capability flags), the protocol schema's ``backend:`` section
(`bioplast.protocol`) and the ``bioplast simulate`` flags (`bioplast.cli`) are all derived
from `OPTIONS` and `CAPABILITIES`, and a protocol is checked against them once, when it is
loaded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One constructor option of a backend: allowed ``choices`` (None: free text, checked
    by the backend), its ``default`` and a one-line ``help``."""

    name: str
    choices: tuple[str, ...] | None
    default: str
    help: str


OPTIONS: dict[str, tuple[Option, ...]] = {
    "torch": (
        Option("device", None, "cpu", "torch device: cpu, cuda or cuda:N"),
        Option("dtype", ("float32", "float64"), "float64", "floating point type"),
        Option("engine", ("fused", "eager"), "fused",
               "time loop: fused (few kernels per step, BPTT's adjoint written out) or eager "
               "(autograd records every step; the reference)"),
    ),
    "brian2": (
        Option("target", ("numpy", "cython", "cpp_standalone"), "numpy",
               "Brian2 code generation target"),
    ),
}

#: defaults of a training protocol's ``backend:`` section where they differ from a
#: simulation's (training runs in float32 unless a protocol says otherwise)
PROTOCOL_DEFAULTS = {"dtype": "float32"}

#: ``differentiable``: gradients flow through a simulation; ``members``: simulates several
#: networks along a member axis; ``member_training``: trains an ensemble as one batched
#: model; ``online_step``: a rule can advance the network one step at a time (e-prop)
CAPABILITIES: dict[str, frozenset[str]] = {
    "torch": frozenset({"differentiable", "members", "member_training", "online_step"}),
    "brian2": frozenset({"members"}),
}


def option_choices(backend: str) -> dict[str, tuple[str, ...] | None]:
    """``{option: allowed values or None}`` of ``backend``."""
    return {option.name: option.choices for option in OPTIONS[backend]}


def defaults(backend: str) -> dict[str, str]:
    """``{option: default}`` of ``backend`` for a simulation."""
    return {option.name: option.default for option in OPTIONS[backend]}


def having(capability: str) -> list[str]:
    """The backends that have ``capability``."""
    return [name for name, capabilities in CAPABILITIES.items() if capability in capabilities]


def flags(capabilities) -> dict[str, bool]:
    """The class flags ``differentiable`` and ``supports_members`` of a backend with
    ``capabilities``."""
    return {"differentiable": "differentiable" in capabilities,
            "supports_members": "members" in capabilities}
