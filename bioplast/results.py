"""Result datasets: building them, and saving/loading netCDF4 files atomically.

The layout (DESIGN section 7; names in `bioplast.schema`): recorded states
``([member,] trial, time, unit)`` named after the equation variables, ``inputs``,
``outputs``, parameters with their dims (``W_rec (unit, presynaptic)``, ``tau (unit)``),
initial states ``initial_<state>``; coordinates with ``units`` attrs (time in seconds);
global provenance attrs (model YAML text, backend, seed, versions, creation time, status).
netCDF cannot hold dict, None or bool attrs: configs are JSON/YAML text, flags int8.
Reading a file's header without xarray, and decoding the stored attrs, is
`bioplast.results_header` (re-exported here).

Results own both directions: this module also decodes what a result stored, for every reader
(the command line, `bioplast.analysis`): the model, parameters, protocol, seed and noise
flag (`stored_model`, `stored_params`, `stored_protocol`, `stored_task`, `stored_seed`,
`stored_noise`), the recorded inputs and initial states (`stored_inputs`, `file_inputs`,
`stored_initial_state`, `recorded_trials`, `trial_initial_state`, `stored_array`), one
network of an ensemble or sweep (`choose_network`, `select_network`, `network_values`), and
its parameters at a curriculum level or epoch (`network_at_level`, `network_at_epoch`).
Their errors are `InputError` naming the file and the attribute or variable.
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
from .results_header import attr_where, dtype_text, stored_int, stored_json, unreadable

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


def variable_where(where: str, name: str) -> str:
    """``FILE (variable 'NAME')``: where an error in a stored variable is."""
    return f"{where} (variable '{name}')"


def stored_protocol(dataset: xr.Dataset, where: str,
                    settings: Mapping[str, Any] | None = None):
    """The protocol a training result stored, to run it again: its ``protocol`` and
    ``model`` texts with ``settings`` (``--set`` edits, `bioplast.protocol.apply_settings`)
    applied, validated by `bioplast.protocol.load_protocol`.

    Returns a `bioplast.protocol.Protocol`.

    Raises InputError: naming ``where`` if there is no ``protocol`` attr (not a training
    result) or if ``settings`` change the model (key ``--set``: the stored model text is
    run); naming ``FILE (attribute 'protocol'|'model')`` if a text is not text or does not
    load (with the line and key, as for a protocol file).
    """
    from .protocol import load_protocol
    settings = dict(settings or {})
    if schema.ATTR_PROTOCOL not in dataset.attrs:
        raise InputError(f"no '{schema.ATTR_PROTOCOL}' attribute: not a training result",
                         file=where)
    if any(key == "model" or key.startswith("model.file") for key in settings):
        raise InputError("the model cannot change when re-running a result (it runs the "
                         "model text it stored); run a protocol file instead",
                         file=where, key="--set")
    texts = {attr: dataset.attrs.get(attr) for attr in (schema.ATTR_PROTOCOL,
                                                         schema.ATTR_MODEL)}
    for attr, text in texts.items():
        if not isinstance(text, str) or "\0" in text:
            raise InputError("not text", file=attr_where(where, attr))
    return load_protocol(texts[schema.ATTR_PROTOCOL] + "\n", settings,
                         model_text=texts[schema.ATTR_MODEL] + "\n",
                         name=attr_where(where, schema.ATTR_PROTOCOL),
                         model_name=attr_where(where, schema.ATTR_MODEL))


def stored_task(dataset: xr.Dataset, model: Model, where: str):
    """The task a training result was trained on: its ``protocol`` attr's ``task`` section
    at ``model``'s time step (the stored model), to draw trials as its training did. Unlike
    `stored_protocol` it does not check the device or memory the training needed, which
    need not be present where the result is analysed.

    Returns a `bioplast.tasks.Task`.

    Raises InputError naming ``FILE (attribute 'protocol')`` if there is no such attr or its
    ``task`` section is not a valid task.
    """
    import yaml
    from .tasks import TASKS
    where = attr_where(where, schema.ATTR_PROTOCOL)
    try:
        section = dict(yaml.safe_load(dataset.attrs[schema.ATTR_PROTOCOL])["task"])
        task_class = TASKS.get(section.pop("name"))
        return task_class(task_class.Config.model_validate(section), model.dt)
    except (KeyError, TypeError, ValueError, yaml.YAMLError, InputError) as error:  # and
        # pydantic's ValidationError, a ValueError
        raise InputError(f"holds no valid task section ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:120]})", file=where) from None


def stored_seed(dataset, where: str) -> int:
    """The ``seed`` attr of a result (0 if absent), an integer from 0 to 2**63 - 1;
    InputError naming ``where`` and the attribute otherwise."""
    return stored_int(dataset, schema.ATTR_SEED, where, 0)


def stored_noise(dataset, where: str) -> bool:
    """Whether a simulation result ran with noise: its ``noise`` attr (int8 0 or 1; True
    if absent); InputError naming ``where`` and the attribute otherwise."""
    return bool(stored_int(dataset, schema.ATTR_NOISE, where, 1, maximum=1))


def stored_inputs(dataset: xr.Dataset, model: Model, where: str) -> np.ndarray | None:
    """The inputs a result recorded, to run its trials again: a float array ``(trial,
    time, input)`` or ``(member, trial, time, input)``, or None if it stored none.

    Raises InputError naming ``FILE (variable 'inputs')`` if they do not fit ``model``
    (shape, channels, NaN or inf: `bioplast.simulation.check_inputs`).
    """
    from .simulation import check_inputs
    if schema.INPUTS not in dataset:
        return None
    return check_inputs(model, dataset[schema.INPUTS].values,
                        where=variable_where(where, schema.INPUTS))


def file_inputs(dataset: xr.Dataset, where: str) -> np.ndarray:
    """The variable ``inputs`` of any netCDF file (``simulate --inputs FILE.nc``), with
    dims ``(trial, time, input)`` or ``(member, trial, time, input)`` in any order,
    returned in that order (values as stored, not yet checked against a model).

    Raises InputError naming ``where`` if there is no ``inputs`` variable or it has other
    dims.
    """
    if schema.INPUTS not in dataset:
        raise InputError(f"no variable '{schema.INPUTS}' (trial, time, input) in the file",
                         file=where)
    variable = dataset[schema.INPUTS]
    wanted = (schema.TRIAL, schema.TIME, schema.INPUT)
    if set(variable.dims) != set(wanted) and set(variable.dims) != {schema.MEMBER, *wanted}:
        raise InputError(f"'{schema.INPUTS}' has dims {variable.dims}, expected "
                         f"{wanted}", file=where)
    order = ((schema.MEMBER,) if schema.MEMBER in variable.dims else ()) + wanted
    return variable.transpose(*order).values


def stored_initial_state(dataset: xr.Dataset, model: Model, where: str
                         ) -> dict[str, np.ndarray]:
    """The initial states a result stored (``initial_<state>``), for each state of
    ``model`` it holds one for: ``{state: array}``, arrays ``(trial, unit)`` or ``(member,
    trial, unit)`` (empty if the result stored none).

    Raises InputError naming ``where`` and the variable (``initial_<state>``) if one has
    another number of dims or not ``model.n_units`` units.
    """
    initial_state = {name: dataset[INITIAL_PREFIX + name].values
                     for name in model.state_names if INITIAL_PREFIX + name in dataset}
    for name, value in initial_state.items():
        if value.ndim not in (2, 3) or value.shape[-1] != model.n_units:
            raise InputError(f"shape {value.shape}, expected (trial, {model.n_units}) or "
                             f"(member, trial, {model.n_units})", file=where,
                             key=INITIAL_PREFIX + name)
    return initial_state


def result_model(dataset: xr.Dataset, where: str = "data"):
    """``(model, params)`` of one network's result, or ``(None, None)`` for a dataset
    without a ``model`` attr (a recording).

    ``model`` is the stored `Model` (`stored_model`); ``params`` maps each of its
    parameters to the stored array, with the parameter's own dims (not checked for
    finiteness or constraints: see `stored_params`).

    Raises InputError naming ``where``: the errors of `stored_model`; a parameter variable
    missing; the parameters having dims beyond their own (an ensemble or sweep: the message
    says to choose one network with ``--select``).
    """
    if schema.ATTR_MODEL not in dataset.attrs:
        return None, None
    model = stored_model(dataset, where)
    missing = [name for name in model.params if name not in dataset]
    if missing:
        raise InputError(f"the result lacks the parameters {', '.join(missing)}", file=where)
    first = next(iter(model.params), None)
    extra = [d for d in dataset[first].dims if d not in model.params[first].dims] \
        if first is not None else []
    if extra:
        raise InputError(f"the result holds several networks (dims {', '.join(extra)}): "
                         f"select one first (--select {extra[0]}=VALUE, or "
                         f"ds.sel({extra[0]}=...) in Python)", file=where)
    return model, {name: dataset[name].values for name in model.params}


def stored_array(dataset: xr.Dataset, name: str, dims: tuple[str, ...],
                 sizes: Mapping[str, int], where: str) -> np.ndarray:
    """``dataset[name]`` as a float array with ``dims`` (those and no others, in that
    order) and the ``sizes`` given for some of them (those the model fixes).

    Raises InputError naming ``where`` and the variable ``name`` if its dims, sizes or
    dtype (not real numbers) differ.
    """
    variable = dataset[name]
    if set(variable.dims) != set(dims):
        raise InputError(f"has dims ({', '.join(map(str, variable.dims))}); expected "
                         f"({', '.join(dims)})", file=where, key=name)
    wrong = [f"{dim}={variable.sizes[dim]} (the model has {size})"
             for dim, size in sizes.items() if variable.sizes[dim] != size]
    if wrong:
        raise InputError(f"does not fit the model: {', '.join(wrong)}", file=where, key=name)
    if variable.dtype.kind not in "biuf":
        raise InputError(f"holds {dtype_text(variable.dtype)}, not real numbers", file=where,
                         key=name)
    return variable.transpose(*dims).values.astype(float)


def recorded_trials(dataset: xr.Dataset, model: Model, where: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(states, inputs)`` of the test trials one network's result recorded: ``states``
    ``(trial, time, n_states * n_units)`` (the model's states side by side, in
    ``model.state_names`` order), ``inputs`` ``(trial, time, input)``; float arrays, NaN
    and inf kept.

    Raises InputError naming ``where``: a state or the inputs not recorded; one of them
    with other dims or sizes than the model's (`stored_array`, naming the variable); states
    and inputs of different trials or steps, or none (key ``inputs``).
    """
    states = [name for name in model.state_names if name in dataset]
    if len(states) < len(model.state_names) or schema.INPUTS not in dataset:
        missing = [n for n in model.state_names if n not in dataset]
        raise InputError("the dynamics need the recorded states and inputs of the result "
                         f"(missing: {', '.join(missing or [schema.INPUTS])})", file=where)
    values = np.concatenate([stored_array(dataset, name,
                                          (schema.TRIAL, schema.TIME, schema.UNIT),
                                          {schema.UNIT: model.n_units}, where)
                             for name in model.state_names], axis=-1)
    inputs = stored_array(dataset, schema.INPUTS, (schema.TRIAL, schema.TIME, schema.INPUT),
                          {schema.INPUT: model.n_inputs}, where)
    if values.shape[:2] != inputs.shape[:2] or 0 in values.shape:
        raise InputError(f"the states ({values.shape[0]} trials x {values.shape[1]} steps) "
                         f"and the inputs ({inputs.shape[0]} x {inputs.shape[1]}) do not "
                         "match", file=where, key=schema.INPUTS)
    return values, inputs


def trial_initial_state(dataset: xr.Dataset, model: Model, n_trials: int, where: str
                        ) -> dict[str, np.ndarray] | None:
    """The initial states of one network's ``n_trials`` recorded trials: ``{state: array
    (trial, unit)}`` for each state of ``model`` with an ``initial_<state>`` variable, or
    None if there is none.

    Raises InputError naming ``where`` and the variable if its dims or sizes differ
    (`stored_array`).
    """
    return {name: stored_array(dataset, INITIAL_PREFIX + name, (schema.TRIAL, schema.UNIT),
                               {schema.TRIAL: n_trials, schema.UNIT: model.n_units}, where)
            for name in model.state_names if INITIAL_PREFIX + name in dataset} or None


def training_dataset(result, command: str | None = None) -> xr.Dataset:
    """The Dataset of a training run (`bioplast.training.TrainingResult`).

    History ``(epoch)`` / ``(epoch, head)``: ``loss`` (mean training loss of the epoch),
    ``grad_norm``, ``eval_loss``, ``accuracy``, ``reliability``, ``level`` (curriculum N, -1
    without one), ``wall_time`` (seconds), ``learning_rate``; the learned parameters; the
    recorded test trials ``inputs``, ``targets``, ``mask``, ``outputs``, recorded variables,
    ``initial_<state>`` and ``condition_<name>``; provenance attrs including the protocol
    text.

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


def choose_network(dataset: xr.Dataset, chosen: Mapping[str, Any], where: str,
                   key: str = "--select") -> xr.Dataset:
    """One network of an ensemble or sweep as ``--select DIM=VALUE`` names it (``chosen``:
    dim -> coordinate value, or position for a dim without coordinate): `select_network`
    after checking every dim and value; ``dataset`` itself if ``chosen`` is empty.

    Raises InputError naming ``where`` (key ``key``) if a dim is not one of the dataset's
    or a value not among the dim's values (the message lists them).
    """
    if not chosen:
        return dataset
    for dim, value in chosen.items():
        if dim not in dataset.dims:
            raise InputError(f"no dim '{dim}' to select from (dims: "
                             f"{', '.join(map(str, dataset.dims))})", file=where, key=key)
        values = dataset[dim].values if dim in dataset.coords else range(dataset.sizes[dim])
        if value not in list(values):
            raise InputError(f"{dim}={value!r} is not among {dim}'s values "
                             f"({', '.join(map(str, values))})", file=where, key=key)
    return select_network(dataset, **chosen)


def network_values(dataset: xr.Dataset, attr: str, where: str = "data") -> np.ndarray:
    """The attr ``attr`` (``status``, ``stop_reason``, ``seed``...) of every network of a
    result, as text: the ``network_<attr>`` variable of an ensemble or sweep (an array over
    its member or grid dims; see `stack_networks`), or a 0-d array of the attr of a single
    network.

    Raises InputError naming ``where`` and ``network_<attr>`` if the result holds neither.
    """
    if NETWORK_PREFIX + attr in dataset:
        return dataset[NETWORK_PREFIX + attr].values
    if attr in dataset.attrs:
        return np.asarray(str(dataset.attrs[attr]))
    raise InputError(f"no '{attr}' attribute and no variable '{NETWORK_PREFIX + attr}'",
                     file=where, key=NETWORK_PREFIX + attr)


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
        "reliability": xr.Variable(
            (schema.EPOCH, schema.HEAD), history.per_head("reliability"),
            {schema.ATTR_LONG_NAME: "test reliability per head: mean probability of the "
                                    "target class (NaN: inactive, or a task without classes)"}),
        "level": xr.Variable(schema.EPOCH, np.asarray(history.level, dtype=np.int64),
                             {schema.ATTR_LONG_NAME: "memory length N of the task during the "
                                                     "epoch (-1: a task without N)"}),
        "wall_time": xr.Variable(schema.EPOCH, np.asarray(history.wall_time, dtype=float),
                                 {schema.ATTR_UNITS: "second"}),
        "learning_rate": xr.Variable(schema.EPOCH, np.asarray(history.lr, dtype=float),
                                     {schema.ATTR_LONG_NAME: "learning rate of the epoch's "
                                                             "updates"}),
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
