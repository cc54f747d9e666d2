"""The torch backend: the compiled step in a time loop, batched over members and trials.

Any device and dtype; autograd flows through parameters that require grad (when none
does, the loop runs under ``torch.no_grad``). Noise comes from a ``torch.Generator``
seeded per run on the backend's device.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import torch

from ..compile_torch import TorchStepper, readout
from ..errors import InputError
from ..model import Model
from .base import Backend, Trajectory

DTYPES = {"float32": torch.float32, "float64": torch.float64}


#: the device types the torch backend runs on
DEVICE_TYPES = ("cpu", "cuda")


def torch_device(name: str) -> torch.device:
    """``torch.device(name)`` for ``cpu`` or ``cuda[:N]``, checked to exist on this machine
    (InputError otherwise)."""
    try:
        device = torch.device(name) if isinstance(name, str) else None
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise InputError(f"{str(name)[:40]!r} is not a torch device bioplast runs on "
                         "(cpu, cuda or cuda:N)")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as error:
        reason = " ".join(str(error).split())[:120]
        raise InputError(f"torch device {name!r} is not available here ({reason})") from None
    return device


def as_member_tensors(model: Model, params: Mapping[str, Any], dtype: torch.dtype,
                      device: torch.device) -> dict[str, torch.Tensor]:
    """Parameters as tensors with a leading member axis (added when absent).

    Tensors already of ``dtype`` on ``device`` are used as they are, so autograd graphs stay
    connected.
    """
    n_members = model.check_params(params)
    tensors = {}
    for name, value in params.items():
        tensor = torch.as_tensor(value, dtype=dtype, device=device)
        tensors[name] = tensor if n_members is not None else tensor.unsqueeze(0)
    return tensors


class TorchBackend(Backend):
    """Options (`bioplast.backends.spec`): ``device`` (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ...), ``dtype`` (``"float32"`` or ``"float64"``, default float64) and
    ``engine`` (``"fused"``, the default, or ``"eager"``: `TorchStepper`)."""

    name = "torch"

    @property
    def device(self) -> torch.device:
        return torch_device(self.settings()["device"])

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.settings()["dtype"]]

    def simulate(self, model: Model, params: Mapping[str, Any], inputs,
                 initial_state: Mapping[str, Any], record: Sequence[str], *,
                 noise: bool = True, seed: int = 0, progress: bool = False,
                 perturbations: Mapping[str, Any] | None = None) -> Trajectory:
        device, dtype = self.device, self.dtype
        started = time.perf_counter()
        tensors = as_member_tensors(model, params, dtype, device)
        needs_grad = any(t.requires_grad for t in tensors.values())
        with torch.set_grad_enabled(needs_grad):
            recorded, final_state, outputs = self._loop(model, tensors, inputs, initial_state,
                                                        record, noise, seed, progress,
                                                        perturbations or {})
        info = {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
                "run_seconds": time.perf_counter() - started}
        return Trajectory(recorded, outputs, final_state, info)

    def _loop(self, model, tensors, inputs, initial_state, record, noise, seed, progress,
              perturbations):
        device, dtype = self.device, self.dtype
        stepper = TorchStepper(model, dtype, device, noise, engine=self.settings()["engine"])
        bound = stepper.bind(tensors)
        n_members = next(iter(tensors.values())).shape[0]
        inputs = torch.as_tensor(inputs, dtype=dtype, device=device)
        state = {}
        for name, value in initial_state.items():
            value = torch.as_tensor(value, dtype=dtype, device=device)
            state[name] = value.expand(n_members, *value.shape[-2:])
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
        readout_source = [model.readout.source] if model.readout else []
        names = list(dict.fromkeys([*record, *readout_source]))
        perturbations = {k: torch.as_tensor(v, dtype=dtype, device=device)
                         for k, v in perturbations.items()}
        stacked, state = stepper.run(bound, inputs, state, names, generator, progress=progress,
                                     perturbations=perturbations)
        outputs = readout(model, stacked[model.readout.source], tensors) \
            if model.readout else None
        return {name: stacked[name] for name in record}, state, outputs
