"""The Brian2 backend: the model file becomes a Brian2 network, run by code generation.

Layout: one ``NeuronGroup`` holds every (member, trial) block of ``n_units`` units; an
input ``NeuronGroup`` reads a 2-D ``TimedArray``; each coupling ``target = W @ source`` is
a ``Synapses`` object with a ``(summed)`` variable connecting units within a block only
(pre-major order); a ``StateMonitor`` records with ``when='end'`` so the value at index k is
the state after step k, as on the torch backend.

Targets: ``numpy`` and ``cython`` (runtime code generation) and ``cpp_standalone``. The
standalone project is built once per model structure (equations, couplings, sizes, number
of steps, recorded variables) in a cache directory outside the repository and re-run with
new weights, parameters, initial states and inputs through ``device.run(run_args=...)``
without recompiling. The cache is ``$BIOPLAST_CACHE_DIR`` or ``~/.cache/bioplast``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import brian2
import numpy as np
import sympy
from brian2.equations.equations import (DIFFERENTIAL_EQUATION, SUBEXPRESSION, Equations,
                                        SingleEquation)
from brian2.parsing.sympytools import str_to_sympy, sympy_to_str
from brian2.units.fundamentalunits import Quantity
from filelock import FileLock

from ..compile_torch import readout
from ..errors import BackendError, BioplastError
from ..model import INPUT_SOURCE, RANDOM_FUNCTIONS, RANDOM_MEANS, Model
from .base import Backend, Trajectory

STIMULUS = "bioplast_stimulus"


def _by_time(blocks: np.ndarray) -> np.ndarray:
    """``(block, time, channel)`` as a TimedArray's ``(time, block * channel)`` values."""
    return np.ascontiguousarray(blocks.transpose(1, 0, 2).reshape(blocks.shape[1], -1))


def cache_dir() -> Path:
    """Where compiled Brian2 code is cached (never inside the repository)."""
    root = os.environ.get("BIOPLAST_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bioplast")
    return Path(root)


PERTURBATION = "perturbation_{}"


def brian2_equations(model: Model, noise: bool, perturbed: Sequence[str] = ()) -> Equations:
    """The model's equations for a NeuronGroup.

    Parameters lose the ``shared`` flag (each member, and so each block of units, may have
    its own value; the backend fills every unit). Without noise, ``rand()``/``randn()``
    take their means (0.5, 0) and ``xi`` terms vanish. Each coupling target T in
    ``perturbed`` is read as ``T + perturbation_T``, a subexpression from a TimedArray.
    """
    equations = []
    for eq in model.equations.values():
        flags = [f for f in eq.flags if f != "shared"]
        expr = eq.expr
        if not noise and eq.type == DIFFERENTIAL_EQUATION:
            expr = eq.expr.split_stochastic()[0]
        if expr is not None:
            sym = str_to_sympy(expr.code)
            replace = {}
            if not noise:
                replace.update({c: RANDOM_MEANS[c.func.__name__] for c in sym.atoms(sympy.Function)
                                if c.func.__name__ in RANDOM_FUNCTIONS})
            replace.update({s: s + sympy.Symbol(PERTURBATION.format(s.name), real=True)
                            for s in sym.free_symbols if s.name in perturbed})
            if replace:
                expr = brian2.Expression(sympy_to_str(sym.xreplace(replace)))
        equations.append(SingleEquation(eq.type, eq.varname, eq.dim, eq.var_type, expr, flags))
    for target in perturbed:
        unit = model.unit_of(target)
        scale = "" if unit == "1" else f" * {unit}"
        equations.append(SingleEquation(
            SUBEXPRESSION, PERTURBATION.format(target), model.equations.dimensions[target],
            expr=brian2.Expression(f"bioplast_{PERTURBATION.format(target)}(t, i){scale}")))
    return Equations(equations)


@dataclass(frozen=True)
class Layout:
    """How members and trials map onto Brian2 neuron indices (block = member*trials+trial)."""

    n_members: int
    n_trials: int
    n_steps: int
    inputs_per_member: bool

    @property
    def n_blocks(self) -> int:
        return self.n_members * self.n_trials

    @property
    def n_input_blocks(self) -> int:
        return self.n_blocks if self.inputs_per_member else self.n_trials

    def input_block(self, block: np.ndarray) -> np.ndarray:
        return block if self.inputs_per_member else block % self.n_trials


def block_connections(layout: Layout, n_source: int, n_target: int, from_input: bool):
    """Presynaptic and postsynaptic indices of a dense coupling within every block, in
    pre-major order, and the (member, postsynaptic, presynaptic) index of each weight."""
    blocks = np.arange(layout.n_blocks)
    source_blocks = layout.input_block(blocks) if from_input else blocks
    pre_local, post_local = np.meshgrid(np.arange(n_source), np.arange(n_target),
                                        indexing="ij")
    pre_local, post_local = pre_local.ravel(), post_local.ravel()
    pre = (source_blocks[:, None] * n_source + pre_local[None, :]).ravel()
    post = (blocks[:, None] * n_target + post_local[None, :]).ravel()
    member = np.repeat(blocks // layout.n_trials, pre_local.size)
    order = np.argsort(pre, kind="stable")  # pre-major over the whole group
    return pre[order], post[order], (member[order], np.tile(post_local, layout.n_blocks)[order],
                                     np.tile(pre_local, layout.n_blocks)[order])


class _Network:
    """The Brian2 objects for one model structure; values are set per run."""

    def __init__(self, model: Model, layout: Layout, record: Sequence[str], noise: bool,
                 perturbed: Sequence[str] = ()):
        dt = model.dt * brian2.second
        # one clock for every object: several clocks are ordered differently in each
        # process, which would change the generated standalone code and force a rebuild
        clock = brian2.Clock(dt, name="bioplast_clock")
        n = model.n_units
        self.model, self.layout = model, layout
        self.timed_arrays = {STIMULUS: brian2.TimedArray(
            np.zeros((layout.n_steps, max(layout.n_input_blocks * model.n_inputs, 1))), dt=dt,
            name=STIMULUS)}
        self.perturbed = list(perturbed)
        for target in self.perturbed:
            name = f"bioplast_{PERTURBATION.format(target)}"
            self.timed_arrays[name] = brian2.TimedArray(
                np.zeros((layout.n_steps, layout.n_blocks * n)), dt=dt, name=name)
        self.units = brian2.NeuronGroup(layout.n_blocks * n,
                                        brian2_equations(model, noise, perturbed),
                                        method=model.method, clock=clock,
                                        name="bioplast_units")
        objects = [self.units]
        self.inputs = None
        if any(c.source == INPUT_SOURCE for c in model.couplings.values()):
            self.inputs = brian2.NeuronGroup(layout.n_input_blocks * model.n_inputs,
                                             f"u = {STIMULUS}(t, i) : 1", clock=clock,
                                             name="bioplast_inputs")
            objects.append(self.inputs)
        self.synapses, self.weight_index = {}, {}
        for coupling in model.couplings.values():
            from_input = coupling.source == INPUT_SOURCE
            source_group = self.inputs if from_input else self.units
            source_var = "u" if from_input else coupling.source
            n_source = model.n_inputs if from_input else n
            synapses = brian2.Synapses(
                source_group, self.units, clock=clock, name=f"bioplast_{coupling.name}",
                model=f"w : 1\n{coupling.target}_post = w * {source_var}_pre : "
                      f"{model.unit_of(coupling.target)} (summed)")
            pre, post, index = block_connections(layout, n_source, n, from_input)
            synapses.connect(i=pre, j=post)
            self.synapses[coupling.name], self.weight_index[coupling.name] = synapses, index
            objects.append(synapses)
        self.record = list(record)  # a perturbed target is recorded with its perturbation
        monitored = [*self.record, *(PERTURBATION.format(t) for t in self.perturbed
                                     if t in self.record)]
        self.monitor = brian2.StateMonitor(self.units, monitored, record=True, when="end",
                                           clock=clock, name="bioplast_monitor")
        objects.append(self.monitor)
        self.network = brian2.Network(*objects)
        self.duration = layout.n_steps * dt

    def values(self, params: Mapping[str, np.ndarray], inputs: np.ndarray,
               initial_state: Mapping[str, np.ndarray],
               perturbations: Mapping[str, np.ndarray] | None = None) -> dict:
        """``{brian2 variable or TimedArray: value}`` for one run (units attached)."""
        model, layout = self.model, self.layout
        values = {}
        for name, spec in model.params.items():
            if name in self.synapses:
                member, post, pre = self.weight_index[name]
                values[self.synapses[name].w] = params[name][member, post, pre]
            elif name in model.equations.parameter_names:
                per_unit = np.broadcast_to(params[name].reshape(layout.n_members, 1, -1),
                                           (layout.n_members, layout.n_trials, model.n_units))
                values[getattr(self.units, name)] = Quantity(
                    per_unit.ravel(), dim=model.equations.dimensions[name])
        for name, value in initial_state.items():
            full = np.broadcast_to(value, (layout.n_members, layout.n_trials, model.n_units))
            values[getattr(self.units, name)] = Quantity(
                full.ravel(), dim=model.equations.dimensions[name])
        if self.inputs is not None:
            # (block, time, input) -> (time, block*input)
            stimulus = inputs.reshape(-1, layout.n_steps, model.n_inputs)
            values[self.timed_arrays[STIMULUS]] = _by_time(stimulus)
        for target in self.perturbed:
            blocks = np.broadcast_to(perturbations[target], (layout.n_members, layout.n_trials,
                                                             layout.n_steps, model.n_units))
            values[self.timed_arrays[f"bioplast_{PERTURBATION.format(target)}"]] = _by_time(
                blocks.reshape(-1, layout.n_steps, model.n_units))
        return values

    def recorded(self) -> dict[str, np.ndarray]:
        """Monitor values as ``(member, trial, time, unit)`` float64 arrays."""
        layout = self.layout
        shape = (layout.n_members, layout.n_trials, self.model.n_units, layout.n_steps)
        result = {}
        for name in self.record:
            values = np.asarray(getattr(self.monitor, name + "_"), dtype=float)
            if values.shape[1] != layout.n_steps:
                raise RuntimeError(f"Brian2 recorded {values.shape[1]} steps, expected "
                                   f"{layout.n_steps}")
            if name in self.perturbed:
                values = values + np.asarray(getattr(self.monitor,
                                                     PERTURBATION.format(name) + "_"))
            result[name] = values.reshape(shape).transpose(0, 1, 3, 2).copy()
        return result


class Brian2Backend(Backend):
    """Options: ``target`` (``numpy``, ``cython`` or ``cpp_standalone``; default numpy)."""

    name = "brian2"

    _standalone: dict[str, Any] = {"key": None, "network": None, "directory": None}

    @property
    def target(self) -> str:
        return self.settings()["target"]

    def simulate(self, model: Model, params: Mapping[str, Any], inputs,
                 initial_state: Mapping[str, Any], record: Sequence[str], *,
                 noise: bool = True, seed: int = 0, progress: bool = False,
                 perturbations: Mapping[str, Any] | None = None) -> Trajectory:
        had_members = model.check_params(params) is not None
        perturbations = {k: np.asarray(_numpy(v), dtype=float)
                         for k, v in (perturbations or {}).items()}
        params = {k: np.asarray(_numpy(v), dtype=float) for k, v in params.items()}
        if not had_members:
            params = {k: v[None] for k, v in params.items()}
        n_members = next(iter(params.values())).shape[0]
        inputs = np.asarray(_numpy(inputs), dtype=float)
        layout = Layout(n_members, inputs.shape[-3], inputs.shape[-2], inputs.ndim == 4)
        initial_state = {k: np.asarray(_numpy(v), dtype=float) for k, v in initial_state.items()}
        readout_source = [model.readout.source] if model.readout else []
        names = list(dict.fromkeys([*record, *readout_source]))
        started = time.perf_counter()
        previous_device = brian2.get_device()
        previous_target = brian2.prefs.codegen.target
        try:
            if self.target == "cpp_standalone":
                recorded, info = self._run_standalone(model, layout, names, noise, seed,
                                                      params, inputs, initial_state,
                                                      perturbations)
                # the binary's own report would need with_output; report the phases here
                if progress:
                    print(f"brian2/cpp_standalone: {'built and ' if info['compiled'] else ''}"
                          f"ran in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            else:
                recorded, info = self._run_runtime(model, layout, names, noise, seed, params,
                                                   inputs, initial_state, perturbations,
                                                   progress)
        except (BioplastError, KeyboardInterrupt):
            raise
        except Exception as error:  # compilation or run failures inside Brian2
            Brian2Backend._standalone.update(key=None, network=None, directory=None)
            reason = " ".join(str(error).split())[:500]
            raise BackendError(f"brian2 ({self.target}) failed: {type(error).__name__}: "
                               f"{reason}") from error
        finally:
            if brian2.get_device() is not previous_device:
                brian2.set_device(previous_device,
                                  build_on_run=getattr(previous_device, "build_on_run", True))
            brian2.prefs.codegen.target = previous_target
        info.update(target=self.target, run_seconds=time.perf_counter() - started)
        final_state = {name: recorded[name][:, :, -1] for name in model.state_names
                       if name in recorded}
        outputs = None
        if model.readout is not None:
            import torch
            outputs = readout(model, torch.as_tensor(recorded[model.readout.source]),
                              {k: torch.as_tensor(v) for k, v in params.items()}).numpy()
        return Trajectory({n: recorded[n] for n in record}, outputs, final_state, info)

    # ------------------------------------------------------------------ runtime
    def _run_runtime(self, model, layout, names, noise, seed, params, inputs, initial_state,
                     perturbations, progress):
        _configure_brian2()
        if brian2.get_device() is not brian2.all_devices["runtime"]:
            brian2.set_device("runtime")
        brian2.prefs.codegen.target = self.target
        network = _Network(model, layout, names, noise, sorted(perturbations))
        namespace = dict(network.timed_arrays)
        for variable, value in network.values(params, inputs, initial_state,
                                              perturbations).items():
            if isinstance(variable, brian2.TimedArray):  # runtime: a new array per run
                namespace[variable.name] = brian2.TimedArray(
                    value, dt=model.dt * brian2.second, name=variable.name)
            else:
                variable[:] = value
        brian2.seed(seed)
        network.network.run(network.duration, namespace=namespace,
                            report="stderr" if progress else None)
        return network.recorded(), {}

    # ------------------------------------------------------------------ standalone
    def _run_standalone(self, model, layout, names, noise, seed, params, inputs,
                        initial_state, perturbations):
        _configure_brian2()
        perturbed = sorted(perturbations)
        key = _structure_key(model, layout, names, noise, seed, perturbed)
        directory = cache_dir() / "brian2_standalone" / key[:20]
        state = Brian2Backend._standalone
        built_now, build_seconds = False, 0.0
        standalone = brian2.all_devices["cpp_standalone"]
        if brian2.get_device() is not standalone:
            brian2.set_device("cpp_standalone", build_on_run=False, directory=str(directory))
        if state["key"] != key:
            started = time.perf_counter()
            state.update(key=None, network=None, directory=None)
            gc.collect()
            standalone.reinit()
            standalone.activate(build_on_run=False, directory=str(directory))
            network = _Network(model, layout, names, noise, perturbed)
            brian2.seed(seed)
            network.network.run(network.duration, namespace=dict(network.timed_arrays))
            directory.mkdir(parents=True, exist_ok=True)
            with FileLock(str(directory) + ".lock"):
                standalone.build(directory=str(directory), compile=True, run=False,
                                 with_output=False)
            state.update(key=key, network=network, directory=directory)
            built_now, build_seconds = True, time.perf_counter() - started
        network = state["network"]
        run_args = network.values(params, inputs, initial_state, perturbations)
        results = f"results_{uuid.uuid4().hex}"
        try:
            standalone.run(directory=str(directory), run_args=run_args,
                           results_directory=results, with_output=False)
            recorded = network.recorded()
        finally:
            shutil.rmtree(directory / results, ignore_errors=True)
            for name in standalone.run_args_arrays:
                for suffix in ("", ".lock"):
                    Path(directory, "static_arrays", name + suffix).unlink(missing_ok=True)
        return recorded, {"compiled": int(built_now), "build_seconds": build_seconds,
                          "build_directory": str(directory)}


def _configure_brian2() -> None:
    prefs = brian2.prefs
    prefs.logging.file_log = False
    prefs.logging.delete_log_on_exit = True
    prefs.codegen.runtime.cython.cache_dir = str(cache_dir() / "cython")
    prefs.codegen.runtime.cython.multiprocess_safe = True


def _structure_key(model: Model, layout: Layout, names, noise: bool, seed: int,
                   perturbed) -> str:
    """Everything that changes the generated standalone code."""
    random = noise and (model.random_symbols or any(model.diffusion.values()))
    structure = {
        "equations": str(brian2_equations(model, noise, perturbed)),
        "couplings": [[c.name, c.source, c.target] for c in model.couplings.values()],
        "sizes": [model.n_units, model.n_inputs, layout.n_members, layout.n_trials,
                  layout.n_steps, int(layout.inputs_per_member)],
        "dt": repr(model.dt), "method": model.method, "record": list(names),
        "seed": seed if random else None, "brian2": brian2.__version__,
    }
    return hashlib.sha256(json.dumps(structure, sort_keys=True).encode()).hexdigest()


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


