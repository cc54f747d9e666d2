"""The Backend interface: simulate one batch of trials of a model.

Backends never read files and never build xarray objects: they take a `Model`, parameter
arrays, inputs and initial states, and return a `Trajectory` of arrays shaped
``(member, trial, time, unit)``. Constructors only store options (scikit-learn style);
capabilities (`differentiable`, `supports_members`) are class attributes checked up front.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from ..errors import CapabilityError, InputError
from ..registry import BACKENDS
from . import spec


@dataclass
class Trajectory:
    """A simulated batch.

    Attributes
    ----------
    recorded : dict of str to array
        Each recorded variable, shaped ``(member, trial, time, unit)``; the value at time
        index k is the one at the end of step k (after the input at step k acted).
    outputs : array or None
        The readout, ``(member, trial, time, output)``.
    final_state : dict of str to array
        States after the last step, ``(member, trial, unit)``.
    info : dict
        Backend provenance (target, dtype, timings, whether code was (re)compiled).
    """

    recorded: dict[str, Any]
    outputs: Any
    final_state: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """Simulates a model for a batch of trials.

    Subclasses set `name`; their options and capabilities come from
    `bioplast.backends.spec` (`option_choices`: allowed values of each constructor option,
    or ``None`` for free values; `capabilities`; `differentiable` and `supports_members`
    follow from them). A backend not declared there sets these class attributes itself.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    differentiable: ClassVar[bool] = False
    supports_members: ClassVar[bool] = True
    option_choices: ClassVar[Mapping[str, Sequence[Any] | None]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name") in spec.OPTIONS:
            cls.option_choices = spec.option_choices(cls.name)
            cls.capabilities = spec.CAPABILITIES[cls.name]
            for flag, value in spec.flags(cls.capabilities).items():
                setattr(cls, flag, value)

    def __init__(self, **options):
        for key, value in options.items():
            if key not in self.option_choices:
                raise InputError(f"backend '{self.name}' has no option '{key}' (options: "
                                 f"{', '.join(self.option_choices) or 'none'})")
            choices = self.option_choices[key]
            if choices is not None and value not in choices:
                raise InputError(f"backend '{self.name}': {key} must be one of "
                                 f"{', '.join(map(str, choices))}, got {value!r}")
        self.options = options

    def settings(self) -> dict[str, Any]:
        """Every option with its effective value (defaults filled in), for provenance."""
        declared = spec.defaults(self.name) if self.name in spec.OPTIONS else {}
        return {**declared, **self.options}

    @abstractmethod
    def simulate(self, model, params: Mapping[str, Any], inputs, initial_state: Mapping[str, Any],
                 record: Sequence[str], *, noise: bool = True, seed: int = 0,
                 progress: bool = False,
                 perturbations: Mapping[str, Any] | None = None) -> Trajectory:
        """Simulate ``inputs`` shaped ``(trial, time, input)`` (or with a leading member
        axis) from ``initial_state`` (``(member, trial, unit)`` per state); ``progress``
        reports on stderr. ``perturbations`` maps coupling targets to values
        ``([member,] trial, time, unit)`` added to them at every step (node
        perturbation); a recorded target includes its perturbation."""

    def require(self, differentiable: bool = False, members: bool = False) -> None:
        """Fail at once, naming the backends that fit, if a capability is missing."""
        needed = [(differentiable, "differentiable"), (members, "supports_members")]
        for wanted, capability in needed:
            if wanted and not getattr(self, capability):
                fitting = [n for n in BACKENDS.names()
                           if getattr(BACKENDS.get(n), capability)]
                raise CapabilityError(f"backend '{self.name}' is not {capability.replace('_', ' ')}"
                                      f"; use one of: {', '.join(fitting)}")


def get_backend(backend: "str | Backend", **options) -> Backend:
    """A backend instance from a name and options (or the instance itself)."""
    if isinstance(backend, Backend):
        if options:
            raise InputError("options are given to the backend's constructor, not here")
        return backend
    return BACKENDS.get(backend)(**options)
