"""Sweeps: a protocol over a grid of settings, on Dask, with resumable shards.

`run_sweep` trains every grid point of ``grid`` (``{"rule.optimizer.lr": [0.01, 0.1],
"seed": [0, 1, 2]}``: the cartesian product, each point a set of ``--set`` edits of the
protocol). `survey` validates every point and finds the finished ones first: a point whose
shard exists and can be read is not trained again, and when every point is finished no
cluster is started at all. Points that can share one batched model
(`bioplast.ensembles.ensemble_key`: they differ only in seed, optimizer hyperparameters,
clipping or initialization) are grouped into ensembles of at most ``max_members``, split
further so that every worker gets work, and started costliest first (`plan_groups`,
`estimated_cost`). Each group is one Dask task (``retries``: a task whose worker died runs
again; it resumes from its checkpoint). Every point writes its own shard atomically
(``OUT.nc.shards/<point>.nc``). `combine` stacks the shards along one dim per grid key
(`dim_names`: named after the key's last part, ``lr``, ``seed``, or what a ``.name`` key
names, ``rule``; the full key in the dim's ``key`` attr), padding runs that stopped early
with NaN; it reads one shard at a time and writes the output as it goes, so that thousands
of points never sit in memory together.

Runs on a `distributed.LocalCluster` (``workers`` processes, ``threads`` torch threads
each, by default the usable cores split between the workers, `bioplast.threads`) or on a
running scheduler (``scheduler`` address; e.g. a Slurm cluster through dask-jobqueue, see
the README). Workers must see the protocol file and the output directory (a shared file
system); one sweep at a time per output. A re-run removes the temporary files that killed
writers on this host left behind, and trains again the points whose shard cannot be read
(a group checkpoint that cannot be read starts its group over).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from . import schema
from .errors import InputError, SweepError
from .files import atomic_write, remove_stale_temporaries
from .threads import per_process, worker_environment
# Brian2 installs a signal handler when it is imported, which only the main thread may do:
# a Dask worker imports this module (to unpickle its tasks) in its main thread, so the
# modules that import Brian2 are imported here, not later in a task's thread
from . import model as _model  # noqa: F401,E402

#: Seconds to wait for a scheduler given by address before giving up.
CONNECT_TIMEOUT = 5
#: Where Dask keeps the environment its nanny gives new worker processes.
PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"
#: The Dask setting that would slow the workers' torch allocations (see `connect`).
NO_MALLOC_TRIM = f"{PRE_SPAWN_ENVIRON}.MALLOC_TRIM_THRESHOLD_"


@dataclass(frozen=True)
class GridPoint:
    """One point of a sweep: its position in the grid, its protocol edits, and a digest of
    the protocol and model text it runs (so that a changed protocol is not taken for a
    finished point)."""

    index: tuple[int, ...]
    settings: dict[str, Any]
    digest: str = ""

    @property
    def name(self) -> str:
        """The file name of the point's shard."""
        return "p" + "-".join(map(str, self.index)) + "_" + self.digest


class Work(NamedTuple):
    """A point to train: its ensemble key (`bioplast.ensembles.ensemble_key`, or the point's
    name where it trains alone) and its `estimated_cost`."""

    point: GridPoint
    key: str
    cost: float


def grid_points(grid: dict[str, list]) -> list[GridPoint]:
    """The cartesian product of ``grid``, in C order (the last key varies fastest)."""
    keys = list(grid)
    return [GridPoint(index, {key: grid[key][i] for key, i in zip(keys, index)})
            for index in itertools.product(*(range(len(grid[key])) for key in keys))]


def dim_names(keys: list[str], taken=()) -> dict[str, str]:
    """The dim of each grid key: its last part (``rule.optimizer.lr`` -> ``lr``); for a key
    ending in ``.name``, what it names (``rule.name`` -> ``rule``, ``task.name`` ->
    ``task``, ``regularizers.0.name`` -> ``regularizers_0``); the whole path with ``_``
    where two keys would get the same dim or the dim names a variable already
    (``model.tau`` -> ``model_tau``)."""
    def path(key: str) -> str:
        return key.replace(".", "_").replace("[", "_").replace("]", "")
    short = [path(key.removesuffix(".name")) if key.endswith(".name") else key.split(".")[-1]
             for key in keys]
    return {key: (name if short.count(name) == 1 and name not in taken else path(key))
            for key, name in zip(keys, short)}


def shard_directory(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


# --- planning -------------------------------------------------------------------------

@functools.cache
def _member_pattern() -> re.Pattern:
    """Matches the keys of `bioplast.ensembles.MEMBER_SETTINGS` (``regularizers.0.weight``
    for ``regularizers[i].weight``)."""
    from .ensembles import MEMBER_SETTINGS
    return re.compile("|".join(re.escape(setting).replace(r"\[i\]", r"\.\d+")
                               for setting in MEMBER_SETTINGS))


def _member_settings(point_settings: dict) -> dict[str, dict]:
    """The member settings among a point's settings (`bioplast.ensembles.MEMBER_SETTINGS`:
    seed, optimizer hyperparameters, clipping, regularizer weights), by the protocol
    section that validates them (``seed``, ``rule``, ``regularizers.0``). They change
    neither the model nor the task, so points that differ only in them share one loaded
    protocol."""
    sections: dict[str, dict] = {}
    for key, value in point_settings.items():
        if _member_pattern().fullmatch(key):
            parts = key.split(".")
            section = ".".join(parts[:2]) if parts[0] == "regularizers" else parts[0]
            sections.setdefault(section, {})[key] = value
    return sections


def survey(protocol_path: str, grid: dict[str, list], base_settings: dict, shards: Path,
           layout: "Layout", damaged: list[Path]) -> tuple[list[GridPoint], list[Work]]:
    """Validate every point of ``grid`` and find the finished ones: ``(all points, points to
    train)``. A finished point's shard is read into ``layout``; one that cannot be read is
    deleted, listed in ``damaged`` and its point trained again.

    Points that differ only in member settings (`_member_settings`) share one loaded
    protocol, and each distinct value of a member setting is validated once (with the
    point's other settings): a grid of 100 learning rates x 100 seeds loads the protocol
    about 200 times, not 10,000 (the digest of a point's shard covers the shared protocol's
    text, the model's and the point's member settings). A point found invalid this way is
    loaded whole, so that its error is the one ``load_protocol`` gives for it (or, valid
    whole, it is taken as such)."""
    from .ensembles import ensemble_key
    from .protocol import load_protocol
    path = Path(protocol_path)
    loaded: dict[str, Any] = {}  # per settings: the protocol, or the InputError it raised
    derived: dict[str, tuple[str, float]] = {}  # per structure: ensemble key, cost

    def load(settings: dict):
        key = json.dumps(list(settings.items()), default=repr)
        if key not in loaded:
            try:
                loaded[key] = load_protocol(path, settings)
            except InputError as error:
                loaded[key] = error
        return loaded[key]

    points, work = [], []
    for point in grid_points(grid):
        settings = {**base_settings, **point.settings}
        members = _member_settings(point.settings)
        member_keys = {key for section in members.values() for key in section}
        structure = {key: value for key, value in settings.items() if key not in member_keys}
        protocol = load(structure)
        if any(isinstance(result, InputError) for result in
               [protocol, *(load({**structure, **section}) for section in members.values())]):
            protocol, members, structure = _load_whole(path, point, settings), {}, settings
        if protocol.training.members > 1:
            raise InputError("a sweep trains one network per grid point: use a grid over "
                             "seed instead of training.members", file=protocol.file,
                             key="training.members")
        chosen = json.dumps({key: value for section in members.values()
                             for key, value in section.items()}, sort_keys=True, default=str)
        text = protocol.text + "\n" + protocol.model.text + "\n" + chosen
        point = GridPoint(point.index, point.settings,
                          hashlib.sha1(text.encode()).hexdigest()[:12])
        points.append(point)
        shard = shards / f"{point.name}.nc"
        if shard.exists():
            try:
                content = read_shard(shard)
            except UNREADABLE:
                shard.unlink(missing_ok=True)
                damaged.append(shard)
            else:
                layout.add(point.index, content)
                continue
        structure_key = json.dumps(list(structure.items()), default=repr)
        if structure_key not in derived:
            # ensembles train on torch: other backends run one point per task
            derived[structure_key] = (ensemble_key(protocol) if
                                      protocol.schema.backend.name == "torch" else "",
                                      estimated_cost(protocol))
        key, cost = derived[structure_key]
        work.append(Work(point, key or point.name, cost))
    return points, work


def _load_whole(path: Path, point: GridPoint, settings: dict):
    """The protocol of ``point`` loaded with all its settings; its error names the point."""
    from .protocol import load_protocol
    try:
        return load_protocol(path, settings)
    except InputError as error:
        raise InputError(f"grid point {_describe(point)}: {error.message}",
                         file=error.file, line=error.line, key=error.key) from None


def plan_groups(work: list[Work], max_members: int, n_workers: int) -> list[list[GridPoint]]:
    """The Dask tasks for ``work``: points with the same ensemble key in groups of at most
    ``max_members``, split so that each of ``n_workers`` workers gets work, costliest
    group first (a long group started last would leave the other workers idle)."""
    by_key: dict[str, list[Work]] = {}
    for item in work:
        by_key.setdefault(item.key, []).append(item)
    groups = []
    for members in by_key.values():
        share = math.ceil(n_workers * len(members) / max(len(work), 1))
        parts = max(math.ceil(len(members) / max_members), min(share, len(members)))
        groups.extend([members[i] for i in chunk]
                      for chunk in np.array_split(np.arange(len(members)), parts) if len(chunk))
    groups.sort(key=lambda group: -sum(item.cost for item in group))
    return [[item.point for item in group] for group in groups]


def estimated_cost(protocol) -> float:
    """Relative cost of training ``protocol``: updates x trials x steps x units^2 (trial
    steps at the task's first level; to order the work, not to predict its time)."""
    task, training = protocol.task, protocol.training
    level = task.initial_level()
    steps = task.sample(1, np.random.default_rng(0), level).n_steps
    return float(training.epochs * training.steps_per_epoch * training.batch_size * steps *
                 protocol.model.n_units ** 2)


def _describe(point: GridPoint) -> str:
    return ", ".join(f"{key}={value}" for key, value in point.settings.items())


# --- training on Dask -----------------------------------------------------------------

def train_group(protocol_path: str, base_settings: dict, points: list[GridPoint],
                shards: str, threads: int) -> list[str]:
    """Train ``points`` as one ensemble with ``threads`` torch threads and write one shard
    per point (a Dask task). Resumes from the group's checkpoint when a previous attempt
    left one."""
    import torch

    from .protocol import load_protocol
    from .results import member_dataset, save
    from .training import train
    torch.set_num_threads(threads)
    shards_dir = Path(shards)
    protocols = [load_protocol(Path(protocol_path), {**base_settings, **p.settings})
                 for p in points]
    group_name = hashlib.sha1("|".join(p.name for p in points).encode()).hexdigest()[:12]
    checkpoint = shards_dir / f"group_{group_name}.checkpoint.pt"
    try:
        result = train(protocols, checkpoint=checkpoint, resume=True)
    except InputError as error:
        if error.file != str(checkpoint):
            raise
        # a checkpoint damaged by a crash: the group starts over (its shards do not exist)
        checkpoint.unlink(missing_ok=True)
        result = train(protocols, checkpoint=checkpoint, resume=False)
    if result.status == schema.STATUS_INTERRUPTED:
        raise RuntimeError("training was interrupted")
    written = []
    for point, member in zip(points, result.members):
        dataset = member_dataset(member, result.info, member.status, member.message)
        dataset.attrs["sweep_point"] = json.dumps(point.settings, sort_keys=True, default=str)
        written.append(str(save(dataset, shards_dir / f"{point.name}.nc")))
    checkpoint.unlink(missing_ok=True)
    return written


def connect(scheduler: str | None, n_workers: int, threads: int):
    """A Dask client: to ``scheduler`` (an address), or to a new LocalCluster of
    ``n_workers`` processes that start with `bioplast.threads.worker_environment`."""
    from distributed import Client, LocalCluster
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError) as error:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler} within "
                             f"{CONNECT_TIMEOUT} s ({type(error).__name__})",
                             key="--scheduler") from None
        except Exception as error:  # distributed: ValueError/TypeError for odd addresses
            reason = " ".join(str(error).split())[:120]
            raise InputError(f"cannot connect to a Dask scheduler at {scheduler!r} "
                             f"({reason}); give an address such as tcp://HOST:8786",
                             key="--scheduler") from None
    import dask
    environment = {f"{PRE_SPAWN_ENVIRON}.{name}": value
                   for name, value in worker_environment(threads).items()}
    # Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_=65536, which makes glibc return
    # memory after nearly every torch allocation: training ran 2.3x slower (measured here)
    with dask.config.set({**environment, NO_MALLOC_TRIM: None}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    return Client(cluster)


def _train(protocol_path: str, base_settings: dict, work: list[Work], shards: Path, *,
           scheduler: str | None, workers: int, threads: int, max_members: int,
           retries: int, progress: Callable[[int], None]) -> None:
    """Train ``work`` on Dask; ``progress(points done)`` once connected (0), then as
    groups finish."""
    client = connect(scheduler, workers, threads)
    progress(0)  # after connecting: a scheduler that cannot be reached fails alone
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        groups = plan_groups(work, max_members, n_workers)
        futures = {client.submit(train_group, str(protocol_path), base_settings, group,
                                 str(shards), threads, retries=retries, pure=False,
                                 priority=len(groups) - rank): group
                   for rank, group in enumerate(groups)}
        from distributed import as_completed
        done = 0
        for future in as_completed(futures):
            try:
                future.result()
            except InputError:
                raise
            except Exception as error:
                reason = " ".join(str(error).split())[:300]
                raise SweepError(f"grid point(s) {'; '.join(_describe(p) for p in futures[future])}"
                                 f" failed ({type(error).__name__}: {reason}); the finished "
                                 f"points' shards are kept in {shards}") from error
            done += len(futures[future])
            progress(done)
    finally:
        client.close()
        if not scheduler and getattr(client, "cluster", None) is not None:
            client.cluster.close()


def run_sweep(protocol_path: str, grid: dict[str, list], output: str | Path, *,
              base_settings: dict | None = None, scheduler: str | None = None,
              workers: int = 2, threads: int | None = None, max_members: int = 64,
              retries: int = 3, progress: Callable[[int, int], None] | None = None,
              notify: Callable[[str], None] | None = None) -> xr.Dataset:
    """Run a sweep, write the stacked dataset to ``output`` and return it, opened lazily
    (see the module docstring). ``threads``: torch threads per worker; by default the
    usable cores split between the ``workers`` of a local cluster, 1 per worker of a
    ``scheduler``. ``progress(done, total)`` is called as points finish; ``notify``
    receives messages for the user (damaged shards trained again)."""
    if not grid:
        raise InputError("a sweep needs at least one --grid KEY=V1,V2,...", key="--grid")
    for key, values in grid.items():
        if not values:
            raise InputError(f"no values for grid key '{key}'", key="--grid")
        if len(set(map(str, values))) != len(values):
            raise InputError(f"grid key '{key}' repeats a value", key="--grid")
    if threads is None:
        threads = 1 if scheduler else per_process(workers)
    output = Path(output)
    shards = shard_directory(output)
    shards.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(shards)  # left by writers killed mid-write
    base_settings = dict(base_settings or {})
    layout = Layout(tuple(len(values) for values in grid.values()))
    damaged: list[Path] = []
    points, work = survey(protocol_path, grid, base_settings, shards, layout, damaged)
    if damaged and notify:
        notify(f"{len(damaged)} shard(s) could not be read and are trained again: "
               f"{', '.join(str(p) for p in damaged)}")
    finished = len(points) - len(work)
    if work:
        def trained(done: int) -> None:
            if progress:
                progress(finished + done, len(points))
        _train(protocol_path, base_settings, work, shards, scheduler=scheduler,
               workers=workers, threads=threads, max_members=max_members, retries=retries,
               progress=trained)
        for item in work:
            layout.add(item.point.index, read_shard(shards / f"{item.point.name}.nc"))
    elif progress:
        progress(finished, len(points))
    combine(grid, points, shards, protocol_path, output, layout)
    # every task is done: what is left are checkpoints of groups planned before and the
    # temporary files of writers killed mid-write
    for leftover in shards.glob("group_*.checkpoint.pt"):
        leftover.unlink(missing_ok=True)
    remove_stale_temporaries(shards)
    return xr.open_dataset(output, engine="netcdf4")


# --- combining the shards -------------------------------------------------------------
#
# `Layout` gathers the variables, indexes and attrs of the shards one shard at a time;
# `combine` writes the small part of the combined dataset (indexes, coordinates, attrs)
# with xarray, then each point's values in place with netCDF4.

#: what opening or reading a damaged netCDF file raises (netCDF4 / HDF5 raise many types)
UNREADABLE = (OSError, RuntimeError, KeyError, IndexError, ValueError, TypeError)
#: attrs that become ``network_<attr>`` variables even where every point agrees (as in
#: `bioplast.results.stack_networks`)
PER_NETWORK = (schema.ATTR_STATUS, "stop_reason", "epochs_completed")


class ShardContent(NamedTuple):
    """What `Layout` needs of one shard, as stored (`_open`)."""

    attrs: dict
    indexes: dict[str, np.ndarray]  # per dim: its coordinate (0, 1, ... where it has none)
    index_attrs: dict[str, dict]
    variables: dict[str, tuple]  # name: (dims, dtype, attrs, values of a non-index coordinate)


def _open(path: Path):
    """``path`` opened with netCDF4 as stored: text as ``str`` objects, no masking (the
    shards bioplast writes mark nothing but NaN as missing, in floats)."""
    dataset = netCDF4.Dataset(path)
    dataset.set_auto_maskandscale(False)
    return dataset


def _attrs_of(item) -> dict:
    """The attributes of a netCDF4 dataset or variable, less the encoding ones that xarray
    reads into coordinates and masks (``coordinates``, ``_FillValue``)."""
    return {key: item.getncattr(key) for key in item.ncattrs()
            if key not in ("coordinates", "_FillValue")}


def _dtype(variable) -> np.dtype:
    return np.dtype(object) if variable.dtype is str else np.dtype(variable.dtype)


def _is_index(dataset, dim: str) -> bool:
    return dim in dataset.variables and dataset[dim].dimensions == (dim,)


def _indexes(dataset) -> dict[str, np.ndarray]:
    """Each dim's index in an open shard: its coordinate, or 0, 1, ... where it has none."""
    return {dim: dataset[dim][...] if _is_index(dataset, dim) else np.arange(len(dimension))
            for dim, dimension in dataset.dimensions.items()}


def read_shard(path: Path) -> ShardContent:
    """The layout of the shard at ``path`` with the values of its coordinates. Raises one of
    `UNREADABLE` if it cannot be read or holds no training loss (a crash or a full disk
    damaged it)."""
    with _open(path) as dataset:
        if dataset["loss"][...].size == 0:
            raise ValueError(f"{path}: no epochs")
        coordinates = set()  # the non-index coordinates, as xarray names them in the file
        for item in [dataset, *dataset.variables.values()]:
            if "coordinates" in item.ncattrs():
                coordinates.update(str(item.getncattr("coordinates")).split())
        indexes = _indexes(dataset)
        variables = {name: (variable.dimensions, _dtype(variable), _attrs_of(variable),
                            variable[...] if name in coordinates else None)
                     for name, variable in dataset.variables.items() if name not in indexes}
        return ShardContent(_attrs_of(dataset), indexes,
                            {dim: _attrs_of(dataset[dim]) if _is_index(dataset, dim) else {}
                             for dim in indexes}, variables)


def _fill(name: str, dtype: np.dtype):
    """What pads a variable (`bioplast.results.fill_values`): "" for text, -1 for the
    curriculum ``level``, NaN for other numbers."""
    return "" if dtype.kind in "OSU" else -1 if name == "level" else np.nan


def _padded(dtype: np.dtype, fill) -> np.dtype:
    """The dtype of ``dtype`` values padded with ``fill`` (as xarray's reindex makes it:
    integers padded with NaN become floats)."""
    return dtype if dtype == object else np.result_type(dtype, fill)


def _signature(values: np.ndarray):
    return (values.dtype.str, values.shape,
            tuple(values.ravel()) if values.dtype == object else values.tobytes())


def _same(a, b) -> bool:
    return json.dumps(a, default=str) == json.dumps(b, default=str)


@dataclass
class _Attrs:
    """Attrs merged as xarray's ``combine_attrs="drop_conflicts"``: ``kept`` holds those on
    which every dataset that has them agrees; ``count`` how many datasets had each."""

    kept: dict = field(default_factory=dict)
    conflicting: set = field(default_factory=set)
    count: Counter = field(default_factory=Counter)

    def add(self, attrs: dict) -> None:
        for key, value in attrs.items():
            self.count[key] += 1
            if key in self.conflicting:
                continue
            if key not in self.kept:
                self.kept[key] = value
            elif not _same(self.kept[key], value):
                del self.kept[key]
                self.conflicting.add(key)


@dataclass
class _Variable:
    """A variable of the shards: its dims, merged attrs, how many shards have it and its
    distinct forms ``(dtype, number of each dim's index[, values signature])``, numbered;
    a non-index coordinate keeps each form's values and the form of each point
    (``at``, -1 where a point lacks it)."""

    dims: tuple[str, ...]
    attrs: _Attrs = field(default_factory=_Attrs)
    count: int = 0
    forms: dict = field(default_factory=dict)
    values: list = field(default_factory=list)
    at: np.ndarray | None = None


class Layout:
    """The layout of the combined dataset of a sweep whose grid has ``shape``, gathered one
    shard at a time (`add`): its variables, indexes, coordinates, dtypes and attrs. What
    varies between shards is kept once per distinct value, so a layout does not grow with
    the number of points."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.points = 0
        self.attrs = _Attrs()
        self.indexes: dict[str, list[pd.Index]] = {}  # per dim, its distinct indexes
        self.index_attrs: dict[str, _Attrs] = {}
        self.variables: dict[str, _Variable] = {}

    def add(self, index: tuple[int, ...], content: ShardContent) -> None:
        """Add the shard (`read_shard`) of the point at ``index``."""
        self.points += 1
        self.attrs.add(content.attrs)
        numbers = {dim: self._number(dim, values) for dim, values in content.indexes.items()}
        for dim, attrs in content.index_attrs.items():
            self.index_attrs.setdefault(dim, _Attrs()).add(attrs)
        for name, (dims, dtype, attrs, values) in content.variables.items():
            variable = self.variables.get(name)
            if variable is None:
                variable = self.variables[name] = _Variable(
                    dims, at=None if values is None else np.full(self.shape, -1))
            elif variable.dims != dims or (variable.at is None) != (values is None):
                raise SweepError(f"the shards disagree on variable '{name}': dims {dims} "
                                 f"and {variable.dims}, or a coordinate in only some")
            variable.count += 1
            variable.attrs.add(attrs)
            form = (dtype, tuple(numbers[dim] for dim in dims))
            if values is not None:
                form += (_signature(values),)
            number = variable.forms.setdefault(form, len(variable.forms))
            if number == len(variable.values):
                variable.values.append(values)
            if values is not None:
                variable.at[index] = number

    def _number(self, dim: str, values: np.ndarray) -> int:
        """The number of ``dim``'s index ``values`` among its distinct indexes."""
        index = pd.Index(values)
        distinct = self.indexes.setdefault(dim, [])
        for number, known in enumerate(distinct):
            if known.dtype == index.dtype and known.equals(index):
                return number
        distinct.append(index)
        return len(distinct) - 1

    @functools.cached_property
    def joined(self) -> dict[str, pd.Index]:
        """Each dim's index in the combined dataset: the union of the shards' (an outer
        join: unchanged where all agree, else sorted)."""
        return {dim: functools.reduce(pd.Index.union, distinct)
                for dim, distinct in self.indexes.items()}

    @functools.cached_property
    def _positions(self) -> dict[str, list[np.ndarray | None]]:
        """Per dim and distinct index: where its values go in the joined index (None:
        everywhere, in order)."""
        return {dim: [None if index.equals(self.joined[dim]) else
                      self.joined[dim].get_indexer(index) for index in distinct]
                for dim, distinct in self.indexes.items()}

    def _pad(self, values: np.ndarray, dims: tuple[str, ...], numbers: tuple[int, ...],
             fill, dtype: np.dtype) -> np.ndarray:
        """``values`` (indexed by the indexes ``numbers`` of ``dims``) on the joined indexes,
        as ``dtype``, ``fill`` where they have no value."""
        positions = [self._positions[dim][number] for dim, number in zip(dims, numbers)]
        if all(p is None for p in positions):
            return values.astype(dtype, copy=False)
        padded = np.full(tuple(len(self.joined[dim]) for dim in dims), fill, dtype)
        padded[np.ix_(*(np.arange(len(self.joined[dim])) if p is None else p
                        for dim, p in zip(dims, positions)))] = values
        return padded

    @functools.cached_property
    def dtypes(self) -> dict[str, tuple[np.dtype, Any]]:
        """Per variable: its dtype in the combined dataset (the shards' dtypes, promoted
        where a point is padded) and what pads it."""
        dtypes = {}
        for name, variable in self.variables.items():
            fill = _fill(name, next(iter(variable.forms))[0])
            kinds = [dtype if all(self._positions[dim][n] is None
                                  for dim, n in zip(variable.dims, numbers))
                     else _padded(dtype, fill) for dtype, numbers, *_ in variable.forms]
            if variable.count < self.points:  # points without it are padded wholly
                kinds.append(_padded(kinds[0], fill))
            dtypes[name] = functools.reduce(np.result_type, kinds), fill
        return dtypes

    @functools.cached_property
    def network_attrs(self) -> list[str]:
        """The attrs kept per point as ``network_<attr>`` variables: those that differ between
        points or that some lack, and always `PER_NETWORK`."""
        return sorted(key for key, count in self.attrs.count.items()
                      if key in PER_NETWORK or key in self.attrs.conflicting
                      or count < self.points)

    def _coordinate_variable(self, name: str, grid_dims: tuple[str, ...]) -> tuple:
        """A non-index coordinate as ``(dims, values, attrs)``, with the grid dims along
        which it differs between points (points without it count as different)."""
        variable = self.variables[name]
        dtype, fill = self.dtypes[name]
        numbers, distinct, aligned = {}, [], []
        for (_, index_numbers, _), values in zip(variable.forms, variable.values):
            values = self._pad(values, variable.dims, index_numbers, fill, dtype)
            number = numbers.setdefault(_signature(values), len(numbers))
            if number == len(distinct):
                distinct.append(values)
            aligned.append(number)
        ids = np.where(variable.at >= 0, np.asarray(aligned)[variable.at], -1)
        varying = [axis for axis in range(ids.ndim)
                   if (ids != ids.take([0], axis=axis)).any()]
        ids = ids[tuple(slice(None) if axis in varying else 0 for axis in range(ids.ndim))]
        values = np.empty(ids.shape + tuple(len(self.joined[dim]) for dim in variable.dims),
                          dtype)
        for position, number in np.ndenumerate(ids):
            values[position] = distinct[number] if number >= 0 else fill
        return (tuple(grid_dims[axis] for axis in varying) + variable.dims, values,
                variable.attrs.kept)

    def frame(self, grid: dict[str, list], grid_dims: tuple[str, ...],
              protocol_path: str) -> xr.Dataset:
        """The combined dataset without its per-point variables: indexes, coordinates,
        attrs."""
        coords = {dim: (dim, np.asarray(index), self.index_attrs[dim].kept)
                  for dim, index in self.joined.items()}
        coords.update({name: self._coordinate_variable(name, grid_dims)
                       for name, variable in self.variables.items() if variable.at is not None})
        coords.update({dim: (dim, _coordinate(values), {"key": key})
                       for dim, (key, values) in zip(grid_dims, grid.items())})
        attrs = {**self.attrs.kept, schema.ATTR_KIND: "sweep",
                 "sweep_grid": json.dumps(grid, default=str),
                 "sweep_protocol_file": str(protocol_path)}
        attrs.pop(schema.ATTR_SEED, None)
        return xr.Dataset(coords=coords, attrs=attrs)

    def create(self, target, grid_dims: tuple[str, ...]) -> None:
        """Create the per-point variables in the netCDF4 dataset ``target``: the shards'
        data variables with the grid dims first (stored in one chunk per point), the
        ``network_<attr>`` variables."""
        from .results import NETWORK_PREFIX
        for name, variable in self.variables.items():
            if variable.at is None:
                dtype, _ = self.dtypes[name]
                shape = tuple(max(1, len(self.joined[dim])) for dim in variable.dims)
                _create(target, name, grid_dims + variable.dims, dtype, variable.attrs.kept,
                        (1,) * len(grid_dims) + shape if shape else None)
        for key in self.network_attrs:
            _create(target, NETWORK_PREFIX + key, grid_dims, np.dtype(object), {}, None)

    def write(self, target, index: tuple[int, ...], shard: Path) -> None:
        """Write the values of the point at ``index`` from its shard into ``target``."""
        from .results import NETWORK_PREFIX
        with _open(shard) as dataset:
            numbers = {dim: self._number(dim, values)
                       for dim, values in _indexes(dataset).items()}
            for name, variable in self.variables.items():
                if variable.at is not None:
                    continue
                dtype, fill = self.dtypes[name]
                if name in dataset.variables:
                    values = self._pad(dataset[name][...], variable.dims,
                                       tuple(numbers[dim] for dim in variable.dims), fill,
                                       dtype)
                else:
                    values = np.full(tuple(len(self.joined[dim]) for dim in variable.dims),
                                     fill, dtype)
                if values.size:
                    target[name][index] = values
            attrs = _attrs_of(dataset)
        for key in self.network_attrs:
            target[NETWORK_PREFIX + key][index] = str(attrs.get(key, ""))


def _create(target, name: str, dims: tuple[str, ...], dtype: np.dtype, attrs: dict,
            chunks: tuple[int, ...] | None) -> None:
    """A netCDF4 variable stored as xarray stores ``dtype`` (text as variable-length
    strings, floats with a NaN ``_FillValue``)."""
    kind = str if dtype == object else dtype
    fill = dtype.type(np.nan) if dtype.kind == "f" else None
    variable = target.createVariable(name, kind, dims, fill_value=fill, chunksizes=chunks)
    variable.setncatts(attrs)


def combine(grid: dict[str, list], points: list[GridPoint], shards: Path,
            protocol_path: str, output: str | Path, layout: Layout | None = None) -> Path:
    """Stack the shards of ``points`` along one dim per grid key into ``output`` (netCDF,
    written atomically) and return its path; ``layout``: the shards' `Layout` where the
    caller has gathered it already.

    The dataset is the one xarray's ``combine_nested(join="outer", coords="different",
    combine_attrs="drop_conflicts")`` makes of the shards prepared by
    `bioplast.results.stack_networks` and padded with `bioplast.results.fill_values`
    (tested against it): every data variable has the grid dims first (``(lr, seed,
    epoch)``), then its own; a dim's index is the union of the points' (sorted where they
    differ) and a point is padded where it has no value (NaN, "" for text, -1 for
    ``level``; integers padded with NaN become floats); attrs that differ between points
    or that some lack become ``network_<attr>`` text variables (grid dims), and
    ``status``, ``stop_reason``, ``epochs_completed`` always do; the attrs on which all
    points that have them agree stay attrs, of the dataset and of each variable. A
    non-index coordinate (``population``) has the grid dims along which it differs.
    Where xarray merges the attrs of sub-grids one after another (an attr that differs in
    one row but agrees in the others could survive), these are merged over all points.

    Reads one shard at a time (twice: its layout, then its values) and writes each
    point's values in place: memory holds one point's values, not the sweep's."""
    if layout is None:
        layout = Layout(tuple(len(values) for values in grid.values()))
        for point in points:
            layout.add(point.index, read_shard(shards / f"{point.name}.nc"))
    dims = dim_names(list(grid), set(layout.variables) | set(layout.indexes))
    grid_dims = tuple(dims.values())
    with atomic_write(output) as temporary:
        layout.frame(grid, grid_dims, protocol_path).to_netcdf(temporary, engine="netcdf4")
        with netCDF4.Dataset(temporary, "r+") as target:
            target.set_auto_maskandscale(False)
            layout.create(target, grid_dims)
            for point in points:
                layout.write(target, point.index, shards / f"{point.name}.nc")
    return Path(output)


def _coordinate(values: list) -> np.ndarray:
    """Grid values as a coordinate: numbers stay numbers, anything else becomes text."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values)
    return np.asarray([json.dumps(v) if not isinstance(v, str) else v for v in values])
