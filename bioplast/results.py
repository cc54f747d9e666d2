"""Result datasets: building them, and saving/loading netCDF4 files atomically.

The layout (DESIGN section 7; names in `bioplast.schema`): recorded states
``([member,] trial, time, unit)`` named after the equation variables, ``inputs``,
``outputs``, parameters with their dims (``W_rec (unit, presynaptic)``, ``tau (unit)``),
initial states ``initial_<state>``; coordinates with ``units`` attrs (time in seconds);
global provenance attrs (model YAML text, backend, seed, versions, creation time, status).
netCDF cannot hold dict, None or bool attrs: configs are JSON/YAML text, flags int8.
Reading a file's header without xarray, and decoding the stored attrs, is
`bioplast.results_header` (re-exported here).
"""

from __future__ import annotations

import datetime as _datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from . import __version__, schema
from .errors import InputError
from .files import atomic_write, check_regular_file
from .limits import check_memory, format_bytes
from .model import Model
from .results_header import attr_where, stored_int, stored_json, unreadable  # noqa: F401

INITIAL_PREFIX = "initial_"
LEVEL_PREFIX = "level_"
SNAPSHOT_PREFIX = "snapshot_"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import brian2
    import netCDF4
    import torch
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__, "brian2": brian2.__version__,
            "xarray": xr.__version__, "netCDF4": netCDF4.__version__}


def provenance(**attrs) -> dict[str, Any]:
    """Global attrs every result carries, plus ``attrs``."""
    return {schema.ATTR_VERSION: __version__,
            schema.ATTR_CREATED: _datetime.datetime.now(_datetime.timezone.utc).isoformat(
                timespec="seconds"),
            schema.ATTR_VERSIONS: json.dumps(library_versions(), sort_keys=True),
            **attrs}


def output_unit(model: Model) -> str:
    """Unit of the readout: its source's for an identity activation, else 1."""
    if model.readout.activation != "identity":
        return "1"
    return model.unit_of(model.readout.source)


def model_coords(model: Model) -> dict[str, Any]:
    """Coordinates of the unit, input and output axes of ``model``."""
    coords = {
        schema.UNIT: (schema.UNIT, np.arange(model.n_units)),
        schema.PRESYNAPTIC: (schema.PRESYNAPTIC, np.arange(model.n_units)),
        schema.INPUT: (schema.INPUT, np.arange(model.n_inputs)),
        schema.OUTPUT: (schema.OUTPUT, np.arange(model.n_outputs)),
    }
    if model.populations:
        labels = np.empty(model.n_units, dtype=object)
        for population in model.populations:
            labels[population.start:population.stop] = population.name
        coords[schema.POPULATION] = (schema.UNIT, labels.astype(str))
    return coords


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def params_variables(model: Model, params: Mapping[str, Any], members: bool) -> dict:
    """Parameter arrays as Dataset variables with their dims and units."""
    lead = (schema.MEMBER,) if members else ()
    variables = {}
    for name, spec in model.params.items():
        variables[name] = xr.Variable(
            (*lead, *spec.dims), _numpy(params[name]),
            {schema.ATTR_UNITS: spec.unit, "trainable": np.int8(spec.trainable)})
    return variables


def simulation_dataset(model: Model, params: Mapping[str, Any], inputs, initial_state,
                       trajectory, *, members: bool, backend: str,
                       backend_options: Mapping[str, Any], seed: int, noise: bool,
                       command: str | None = None) -> xr.Dataset:
    """The Dataset of one simulated batch (see module docstring).

    ``trajectory`` and ``initial_state`` (``(member, trial, unit)`` per state) hold arrays
    with a member axis; ``members=False`` drops it (it has length 1 then).
    """
    def squeeze(array):
        array = _numpy(array)
        return array if members else array[0]

    lead = (schema.MEMBER,) if members else ()
    inputs = _numpy(inputs)
    n_steps = inputs.shape[-2]
    data = {}
    for name, values in trajectory.recorded.items():
        data[name] = xr.Variable((*lead, schema.TRIAL, schema.TIME, schema.UNIT),
                                 squeeze(values), {schema.ATTR_UNITS: model.unit_of(name)})
    input_dims = (schema.MEMBER,) if inputs.ndim == 4 else ()
    data[schema.INPUTS] = xr.Variable((*input_dims, schema.TRIAL, schema.TIME, schema.INPUT),
                                      inputs, {schema.ATTR_UNITS: "1"})
    if trajectory.outputs is not None:
        data[schema.OUTPUTS] = xr.Variable((*lead, schema.TRIAL, schema.TIME, schema.OUTPUT),
                                           squeeze(trajectory.outputs),
                                           {schema.ATTR_UNITS: output_unit(model)})
    data.update(params_variables(model, params, members))
    for name, value in initial_state.items():
        data[INITIAL_PREFIX + name] = xr.Variable((*lead, schema.TRIAL, schema.UNIT),
                                                  squeeze(value),
                                                  {schema.ATTR_UNITS: model.unit_of(name)})
    coords = {
        schema.TIME: (schema.TIME, np.arange(n_steps) * model.dt,
                      {schema.ATTR_UNITS: "second",
                       schema.ATTR_LONG_NAME: "start of step k; states are recorded at its end"}),
        schema.TRIAL: (schema.TRIAL, np.arange(inputs.shape[-3])),
        **model_coords(model),
    }
    if members:
        coords[schema.MEMBER] = (schema.MEMBER, np.arange(_numpy(next(iter(
            trajectory.recorded.values()))).shape[0]))
    attrs = provenance(**{
        schema.ATTR_KIND: "simulation",
        schema.ATTR_MODEL: model.text,
        schema.ATTR_MODEL_NAME: model.name,
        schema.ATTR_MODEL_OVERRIDES: json.dumps(model.overrides, sort_keys=True),
        schema.ATTR_BACKEND: backend,
        schema.ATTR_BACKEND_OPTIONS: json.dumps(dict(backend_options), sort_keys=True),
        schema.ATTR_SEED: int(seed),
        schema.ATTR_NOISE: np.int8(noise),
        schema.ATTR_DT: model.dt,
        schema.ATTR_METHOD: model.method,
        schema.ATTR_STATUS: schema.STATUS_COMPLETE if all(
            np.all(np.isfinite(_numpy(v))) for v in trajectory.recorded.values())
        else schema.STATUS_DIVERGED,
    })
    if command:
        attrs[schema.ATTR_COMMAND] = command
    return xr.Dataset(data, coords=coords, attrs=attrs)


def save(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``dataset`` to netCDF4 at ``path`` atomically (temporary file + rename).

    A crash mid-write leaves either the old file or none, never a partial one.
    Returns the path.
    """
    with atomic_write(path) as temporary:
        dataset.to_netcdf(temporary, engine="netcdf4")
    return Path(path)


#: a file that unpacks to more than this many times its size, and more than
#: `UNPACKED_MINIMUM` bytes, is refused (unwritten chunks read as fill values, extreme
#: compression: a small file must not claim the machine's memory)
MAX_UNPACK_RATIO = 1000
UNPACKED_MINIMUM = 1 << 30


def load(path: str | os.PathLike, values: bool = True) -> xr.Dataset:
    """Read a netCDF file fully into memory (the file is closed on return); with
    ``values=False`` only its dims, coordinates and attrs (the variables stay on disk;
    `bioplast.results_header.read_header` reads these without xarray).

    InputError, naming the file, if it is missing, not netCDF, damaged, or if its variables
    would need more memory than is available or than a file of its size can honestly hold
    (checked before anything is read).
    """
    path = check_regular_file(path, "netCDF file")
    try:
        lazy = xr.open_dataset(path, engine="netcdf4")
        if not values:
            return lazy
        with lazy:
            unpacked = sum(float(v.size) * v.dtype.itemsize for v in lazy.variables.values())
            size = path.stat().st_size
            if unpacked > UNPACKED_MINIMUM and unpacked > MAX_UNPACK_RATIO * size:
                raise InputError(f"its variables claim {format_bytes(unpacked)} from a file of "
                                 f"{format_bytes(size)} (unwritten or "
                                 "extremely compressed data): not read", file=str(path))
            check_memory(unpacked, "reading the file", file=str(path))
            return lazy.load()
    except InputError:
        raise
    except MemoryError:
        raise InputError("the file's variables do not fit in memory", file=str(path)) \
            from None
    except Exception as error:  # netCDF4/HDF5 raise many types for damaged files
        raise unreadable(error, path) from None


def stored_model(dataset: xr.Dataset, where: str, **overrides) -> Model:
    """The model a result stored (its text and overrides, plus ``overrides``), validated:
    errors name the file and the attribute."""
    from .yamlfile import YamlDocument
    if schema.ATTR_MODEL not in dataset.attrs:
        raise InputError(f"no '{schema.ATTR_MODEL}' attribute: not a bioplast result",
                         file=where)
    text = dataset.attrs[schema.ATTR_MODEL]
    if not isinstance(text, str):
        raise InputError("not model text", file=attr_where(where, schema.ATTR_MODEL))
    stored = stored_json(dataset, schema.ATTR_MODEL_OVERRIDES, where, {})
    document = YamlDocument(text + "\n", attr_where(where, schema.ATTR_MODEL))
    return Model(document, {**stored, **overrides})


def stored_params(dataset: xr.Dataset, model: Model, where: str,
                  replaced: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Parameter arrays of ``model`` as a result stored them, except those in ``replaced``
    (new values), all checked against the model (names, shapes, finiteness, constraints)."""
    replaced = dict(replaced or {})
    names = [name for name in model.params if name not in replaced]
    missing = [name for name in names if name not in dataset.variables]
    if missing:
        raise InputError(f"no parameter variable {', '.join(missing)} for model "
                         f"'{model.name}'", file=where)
    params = {**{name: dataset[name].values for name in names}, **replaced}
    model.check_params(params, where=where)
    return params


def training_dataset(result, command: str | None = None) -> xr.Dataset:
    """The Dataset of a training run (`bioplast.training.TrainingResult`).

    History ``(epoch)`` / ``(epoch, head)``: ``loss`` (mean training loss of the epoch),
    ``grad_norm``, ``eval_loss``, ``accuracy``, ``level`` (curriculum N, -1 without one),
    ``wall_time`` (seconds); the learned parameters; the recorded test trials ``inputs``,
    ``targets``, ``mask``, ``outputs``, recorded variables, ``initial_<state>`` and
    ``condition_<name>``; provenance attrs including the protocol text.

    An ensemble's Dataset has every variable along a leading ``member`` dim, with what
    varies between members as coordinates (``seed``, ``lr``, ...); see `stack_networks`
    for the per-member attrs (``network_status``, ``network_seed``, ...) and the padding.
    """
    if len(result.members) == 1:
        dataset = member_dataset(result.members[0], result.info, result.status,
                                 result.message)
    else:
        datasets = stack_networks([member_dataset(member, result.info, member.status,
                                                  member.message)
                                   for member in result.members])
        dataset = xr.concat(datasets, dim=schema.MEMBER, join="outer", coords="different",
                            compat="equals", combine_attrs="drop_conflicts",
                            fill_value=fill_values(datasets))
        dataset = dataset.assign_coords(
            {schema.MEMBER: np.arange(len(datasets)),
             **{key: (schema.MEMBER, np.asarray(values)) for key, values in
                result.member_coords.items()}})
        dataset.attrs.update({schema.ATTR_STATUS: result.status, "stop_reason": result.message,
                              "members": len(result.members)})
        dataset = without_encoding(dataset)
    if command:
        dataset.attrs[schema.ATTR_COMMAND] = command
    return dataset


NETWORK_PREFIX = "network_"


def stack_networks(datasets: list[xr.Dataset]) -> list[xr.Dataset]:
    """Prepare the datasets of several networks for stacking along new dims: every attr
    that differs between them (seed, protocol, model overrides...) and always the status,
    stop reason and epochs completed become 0-d text variables ``network_<attr>``, so
    that they are kept per network (`select_network` turns them back into attrs)."""
    keys = sorted(set().union(*(d.attrs for d in datasets)))
    always = (schema.ATTR_STATUS, "stop_reason", "epochs_completed")
    differing = [key for key in keys if key in always
                 or len({json.dumps(d.attrs.get(key), default=str) for d in datasets}) > 1]
    prepared = []
    for dataset in datasets:
        dataset = dataset.copy()
        for key in differing:
            dataset[NETWORK_PREFIX + key] = ((), str(dataset.attrs.get(key, "")))
        prepared.append(dataset)
    return prepared


def fill_values(datasets: list[xr.Dataset]) -> dict:
    """What pads a variable where networks differ in size (epochs, time, units): NaN, ""
    for text, -1 for the curriculum ``level``."""
    fill = {}
    for dataset in datasets:
        for name, variable in dataset.variables.items():
            fill[name] = "" if variable.dtype.kind in "OSU" else np.nan
    fill["level"] = -1
    return fill


def without_encoding(dataset: xr.Dataset) -> xr.Dataset:
    """Drop the on-disk encodings that loaded datasets carry (an int encoding would turn
    the NaN padding of a stacked variable into garbage when saved)."""
    for variable in dataset.variables.values():
        variable.encoding = {}
    return dataset


def select_network(dataset: xr.Dataset, **indexers) -> xr.Dataset:
    """One network of an ensemble or sweep (``member=2``, ``lr=0.01``, by coordinate
    value, or by position for dims without coordinates), with its own attrs back (from the
    ``network_<attr>`` variables) and the padding of shorter or smaller runs removed."""
    by_value = {d: v for d, v in indexers.items() if d in dataset.coords}
    one = dataset.sel(by_value).isel({d: v for d, v in indexers.items() if d not in by_value})
    for name in [n for n in one.data_vars if str(n).startswith(NETWORK_PREFIX)]:
        if one[name].ndim == 0:
            one.attrs[str(name)[len(NETWORK_PREFIX):]] = one[name].values.item()
            one = one.drop_vars(name)
    if "loss" in one and one["loss"].dims == (schema.EPOCH,):
        ran = np.isfinite(one["loss"].values) | np.isfinite(one["eval_loss"].values)
        one = one.isel({schema.EPOCH: slice(0, int(np.nonzero(ran)[0].max()) + 1
                                            if ran.any() else 0)})
    if schema.INPUTS in one and schema.TIME in one.dims:
        one = one.dropna(schema.TIME, how="all", subset=[schema.INPUTS])
    for dim in (schema.UNIT, schema.PRESYNAPTIC):
        padded = [n for n, v in one.data_vars.items() if dim in v.dims and v.dtype.kind == "f"]
        if dim in one.dims and padded:
            one = one.dropna(dim, how="all", subset=padded)
    return one


def kept_parameter_variables(model: Model, history) -> dict[str, xr.Variable]:
    """Parameters kept during training: ``level_<param> (passed_level, ...)`` when each
    curriculum level N was passed, with ``level_epoch (passed_level)`` the epoch it was
    passed in (``record.levels``); ``snapshot_<param> (snapshot_epoch, ...)`` after every
    k-th epoch (``record.snapshots_every``)."""
    variables = {}
    levels = sorted(history.passed)
    if levels:
        variables[LEVEL_PREFIX + "epoch"] = xr.Variable(
            schema.PASSED_LEVEL, np.array([history.passed[n][0] for n in levels], dtype=float),
            {schema.ATTR_LONG_NAME: "epoch in which the level was passed"})
    epochs = sorted(history.snapshots)
    for prefix, dim, kept in ((LEVEL_PREFIX, schema.PASSED_LEVEL,
                               [history.passed[n][1] for n in levels]),
                              (SNAPSHOT_PREFIX, schema.SNAPSHOT_EPOCH,
                               [history.snapshots[e] for e in epochs])):
        for name, spec in model.params.items() if kept else ():
            variables[prefix + name] = xr.Variable(
                (dim, *spec.dims), np.stack([params[name] for params in kept]),
                {schema.ATTR_UNITS: spec.unit})
    return variables


def _with_kept(network: xr.Dataset, prefix: str, dim: str, value: int, option: str,
               what: str) -> xr.Dataset:
    if dim not in network.coords:
        raise InputError(f"the result kept no parameters per {what} (train with "
                         f"{option})", key=dim)
    names = [str(v)[len(prefix):] for v in network.data_vars
             if str(v).startswith(prefix) and network[v].dims[:1] == (dim,)
             and str(v) != LEVEL_PREFIX + "epoch"]
    kept = network[prefix + names[0]].dropna(dim, how="all")[dim].values
    if value not in kept:
        raise InputError(f"no parameters kept at {what} {value} (kept: "
                         f"{', '.join(str(v) for v in kept)})", key=dim)
    return network.assign({name: network[prefix + name].sel({dim: value}, drop=True)
                           for name in names})


def network_at_level(network: xr.Dataset, n: int) -> xr.Dataset:
    """One network's Dataset with its parameters as they were when curriculum level ``n``
    was passed (a result trained with ``record.levels: true``), e.g. for its timescales."""
    return _with_kept(network, LEVEL_PREFIX, schema.PASSED_LEVEL, n, "record.levels: true",
                      "curriculum level N =")


def network_at_epoch(network: xr.Dataset, epoch: int) -> xr.Dataset:
    """One network's Dataset with its parameters as they were after ``epoch`` (a result
    trained with ``record.snapshots_every``), e.g. for its fixed points then."""
    return _with_kept(network, SNAPSHOT_PREFIX, schema.SNAPSHOT_EPOCH, epoch,
                      "record.snapshots_every: K", "epoch")


def member_dataset(result, info: dict, status: str, message: str) -> xr.Dataset:
    """The Dataset of one trained network (`bioplast.training.MemberResult`)."""
    protocol, history, model = result.protocol, result.history, result.protocol.model
    task = protocol.task
    n_epochs = len(history)
    data = {
        "loss": xr.Variable(schema.EPOCH, np.asarray(history.loss, dtype=float),
                            {schema.ATTR_LONG_NAME: "mean training loss of the epoch"}),
        "grad_norm": xr.Variable(schema.EPOCH, np.asarray(history.grad_norm, dtype=float)),
        "eval_loss": xr.Variable(schema.EPOCH, np.asarray(history.eval_loss, dtype=float),
                                 {schema.ATTR_LONG_NAME: "loss on test batches after the epoch"}),
        "accuracy": xr.Variable((schema.EPOCH, schema.HEAD), history.accuracy_array(),
                                {schema.ATTR_LONG_NAME: "test accuracy per head (NaN: inactive)"}),
        "level": xr.Variable(schema.EPOCH, np.asarray(history.level, dtype=np.int64),
                             {schema.ATTR_LONG_NAME: "memory length N of the task during the "
                                                     "epoch (-1: a task without N)"}),
        "wall_time": xr.Variable(schema.EPOCH, np.asarray(history.wall_time, dtype=float),
                                 {schema.ATTR_UNITS: "second"}),
    }
    if history.parameters:
        for name, long_name in (("alignment", "cosine between the rule's update and the BPTT "
                                              "gradient (before the epoch's updates)"),
                                ("update_norm", "norm of the rule's gradient estimate"),
                                ("gradient_norm", "norm of the BPTT gradient")):
            data[f"{'gradient_' if name == 'alignment' else ''}{name}"] = xr.Variable(
                (schema.EPOCH, "parameter"), history.per_parameter(name),
                {schema.ATTR_LONG_NAME: long_name})
    data.update(params_variables(model, result.params, members=False))
    data.update(kept_parameter_variables(model, history))
    coords = {schema.EPOCH: (schema.EPOCH, np.arange(n_epochs)),
              schema.HEAD: (schema.HEAD, np.arange(task.n_heads)),
              "parameter": ("parameter", np.array(history.parameters, dtype=str)),
              **model_coords(model)}
    if history.passed:
        coords[schema.PASSED_LEVEL] = (schema.PASSED_LEVEL, np.array(sorted(history.passed)),
                                       {schema.ATTR_LONG_NAME: "curriculum N passed"})
    if history.snapshots:
        coords[schema.SNAPSHOT_EPOCH] = (schema.SNAPSHOT_EPOCH,
                                         np.array(sorted(history.snapshots)),
                                         {schema.ATTR_LONG_NAME: "parameters after epoch"})
    if getattr(task.config, "curriculum", None) == "multi_head":
        top = task.level_at(task.config.max_n)
        coords["head_n"] = (schema.HEAD, np.array([n for _, n in top.heads]),
                            {schema.ATTR_LONG_NAME: "memory length N of each head"})
    test = result.test
    if test is not None:
        batch = test.batch
        trial_time = (schema.TRIAL, schema.TIME)
        data[schema.INPUTS] = xr.Variable((*trial_time, schema.INPUT), batch.inputs)
        data[schema.TARGETS] = xr.Variable((*trial_time, schema.OUTPUT), batch.targets)
        data[schema.MASK] = xr.Variable((*trial_time, schema.OUTPUT), batch.mask)
        data[schema.OUTPUTS] = xr.Variable((*trial_time, schema.OUTPUT), test.outputs,
                                           {schema.ATTR_UNITS: output_unit(model)})
        for name, values in test.recorded.items():
            data[name] = xr.Variable((*trial_time, schema.UNIT), values,
                                     {schema.ATTR_UNITS: model.unit_of(name)})
        for name, values in test.initial_state.items():
            data[INITIAL_PREFIX + name] = xr.Variable((schema.TRIAL, schema.UNIT), values,
                                                      {schema.ATTR_UNITS: model.unit_of(name)})
        for name, values in batch.conditions.items():
            data[f"condition_{name}"] = xr.Variable(schema.TRIAL, np.asarray(values))
        coords[schema.TIME] = (schema.TIME, np.arange(batch.n_steps) * model.dt,
                               {schema.ATTR_UNITS: "second",
                                schema.ATTR_LONG_NAME: "start of step k; states are recorded "
                                                       "at its end"})
        coords[schema.TRIAL] = (schema.TRIAL, np.arange(batch.n_trials))
    attrs = provenance(**{
        schema.ATTR_KIND: "training",
        schema.ATTR_PROTOCOL: protocol.text,
        "protocol_name": protocol.schema.name,
        schema.ATTR_MODEL: model.text,
        schema.ATTR_MODEL_NAME: model.name,
        schema.ATTR_MODEL_OVERRIDES: json.dumps(model.overrides, sort_keys=True),
        schema.ATTR_SEED: int(protocol.seed),
        schema.ATTR_BACKEND: protocol.schema.backend.name,
        schema.ATTR_BACKEND_OPTIONS: json.dumps(protocol.schema.backend.model_dump(
            exclude={"name"}), sort_keys=True),
        schema.ATTR_RULE: protocol.rule.name,
        "task": task.name,
        "task_timing": json.dumps(task.describe_timing(), sort_keys=True),
        schema.ATTR_DT: model.dt,
        schema.ATTR_METHOD: model.method,
        schema.ATTR_STATUS: status,
        "stop_reason": message,
        "epochs_completed": int(info["epochs_completed"]),
        "resumed_from_epoch": int(-1 if info["resumed_from_epoch"] is None
                                  else info["resumed_from_epoch"]),
        "task_loss": task.loss,
    })
    return xr.Dataset(data, coords=coords, attrs=attrs)
