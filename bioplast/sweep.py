"""Sweeps: a protocol over a grid of settings, on Dask, with resumable shards.

`run_sweep` trains every grid point of ``grid`` (``{"rule.optimizer.lr": [0.01, 0.1],
"seed": [0, 1, 2]}``: the cartesian product, each point a set of ``--set`` edits of the
protocol). Points that can share one batched model (`bioplast.ensembles.ensemble_key`:
they differ only in seed, optimizer hyperparameters, clipping or initialization) are
grouped into ensembles of at most ``max_members``, split further so that every worker
gets work, and started costliest first (`estimated_cost`). Each group is one Dask task
(``retries``: a task whose worker died runs again; it resumes from its checkpoint). Every
point writes its own shard atomically (``OUT.nc.shards/<point>.nc``); a re-run of the same
sweep skips points whose shard exists. The final dataset stacks the shards along one dim
per grid key (named after the key's last part: ``lr``, ``seed``; the full key in the dim's
``key`` attr), padding runs that stopped early with NaN.

Runs on a `distributed.LocalCluster` (``workers`` processes, ``threads`` torch threads
each) or on a running scheduler (``scheduler`` address; e.g. a Slurm cluster through
dask-jobqueue, see the README). Workers must see the protocol file and the output
directory (a shared file system); one sweep at a time per output. A re-run removes the
temporary files that killed writers on this host left behind, and trains again the points
whose shard cannot be read (a group checkpoint that cannot be read starts its group over).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr

from . import schema
from .errors import InputError, SweepError
from .files import remove_stale_temporaries
# Brian2 installs a signal handler when it is imported, which only the main thread may do:
# a Dask worker imports this module (to unpickle its tasks) in its main thread, so the
# modules that import Brian2 are imported here, not later in a task's thread
from . import model as _model  # noqa: F401,E402

#: Seconds to wait for a scheduler given by address before giving up.
CONNECT_TIMEOUT = 5
#: The Dask setting that would slow the workers' torch allocations (see `connect`).
NO_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


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


def grid_points(grid: dict[str, list]) -> list[GridPoint]:
    """The cartesian product of ``grid``, in C order (the last key varies fastest)."""
    keys = list(grid)
    return [GridPoint(index, {key: grid[key][i] for key, i in zip(keys, index)})
            for index in itertools.product(*(range(len(grid[key])) for key in keys))]


def dim_names(keys: list[str], taken=()) -> dict[str, str]:
    """The dim of each grid key: its last part (``lr``), or the whole path with ``_``
    where two keys end alike or the last part names a variable already (``model.tau``
    -> ``model_tau``)."""
    last = [key.split(".")[-1] for key in keys]
    return {key: (name if last.count(name) == 1 and name not in taken
                  else key.replace(".", "_").replace("[", "_").replace("]", ""))
            for key, name in zip(keys, last)}


def shard_directory(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def shard_is_finished(shard: Path, damaged: list[Path]) -> bool:
    """Whether ``shard`` holds a finished point. One that cannot be read (a crash or a full
    disk damaged it) is deleted and added to ``damaged``: its point is trained again."""
    if not shard.exists():
        return False
    try:
        with xr.open_dataset(shard, engine="netcdf4") as dataset:
            readable = "loss" in dataset.variables and dataset["loss"].size > 0
            if readable:
                dataset["loss"].load()
    except Exception:  # netCDF4 / HDF5 raise many types for a damaged file
        readable = False
    if not readable:
        shard.unlink(missing_ok=True)
        damaged.append(shard)
    return readable


def plan(protocol_path: str, grid: dict[str, list], base_settings: dict, shards: Path,
         max_members: int, n_workers: int, damaged: list[Path] | None = None
         ) -> tuple[list[list[GridPoint]], list[GridPoint]]:
    """Validate every point and group the unfinished ones: ``(groups, all points)``.
    Shards that cannot be read are listed in ``damaged`` and their points trained again."""
    damaged = [] if damaged is None else damaged
    from .ensembles import ensemble_key
    from .protocol import load_protocol
    by_key: dict[str, list[GridPoint]] = {}
    points = []
    costs: dict[str, float] = {}
    for point in grid_points(grid):
        try:
            protocol = load_protocol(Path(protocol_path),
                                     {**base_settings, **point.settings})
        except InputError as error:
            raise InputError(f"grid point {_describe(point)}: {error.message}",
                             file=error.file, line=error.line, key=error.key) from None
        if protocol.training.members > 1:
            raise InputError("a sweep trains one network per grid point: use a grid over "
                             "seed instead of training.members", file=protocol.file,
                             key="training.members")
        text = protocol.text + "\n" + protocol.model.text
        point = GridPoint(point.index, point.settings,
                          hashlib.sha1(text.encode()).hexdigest()[:12])
        points.append(point)
        if shard_is_finished(shards / f"{point.name}.nc", damaged):
            continue
        costs[point.name] = estimated_cost(protocol)
        # ensembles train on torch: other backends run one point per task
        key = ensemble_key(protocol) if protocol.schema.backend.name == "torch" else point.name
        by_key.setdefault(key, []).append(point)
    remaining = sum(len(members) for members in by_key.values())
    groups = []
    for members in by_key.values():
        share = math.ceil(n_workers * len(members) / max(remaining, 1))
        parts = max(math.ceil(len(members) / max_members), min(share, len(members)))
        groups.extend(list(chunk) for chunk in np.array_split(np.array(members, dtype=object),
                                                               parts) if len(chunk))
    # the costliest first: a long group started last would leave the other workers idle
    groups.sort(key=lambda group: -sum(costs[p.name] for p in group))
    return groups, points


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


def train_group(protocol_path: str, base_settings: dict, points: list[GridPoint],
                shards: str, threads: int) -> list[str]:
    """Train ``points`` as one ensemble and write one shard per point (a Dask task).
    Resumes from the group's checkpoint when a previous attempt left one."""
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
    """A Dask client: to ``scheduler`` (an address), or to a new LocalCluster."""
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
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # inherited by the workers
    # Dask's nanny gives workers MALLOC_TRIM_THRESHOLD_=65536, which makes glibc return
    # memory after nearly every torch allocation: training ran 2.3x slower (measured here)
    with dask.config.set({NO_MALLOC_TRIM: None}):
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    return Client(cluster)


def run_sweep(protocol_path: str, grid: dict[str, list], output: str | Path, *,
              base_settings: dict | None = None, scheduler: str | None = None,
              workers: int = 2, threads: int = 1, max_members: int = 64, retries: int = 3,
              progress: Callable[[int, int], None] | None = None,
              notify: Callable[[str], None] | None = None) -> xr.Dataset:
    """Run a sweep and return (and write to ``output``) the stacked dataset; see the
    module docstring. ``progress(done, total)`` is called as points finish; ``notify``
    receives messages for the user (damaged shards trained again)."""
    if not grid:
        raise InputError("a sweep needs at least one --grid KEY=V1,V2,...", key="--grid")
    for key, values in grid.items():
        if not values:
            raise InputError(f"no values for grid key '{key}'", key="--grid")
        if len(set(map(str, values))) != len(values):
            raise InputError(f"grid key '{key}' repeats a value", key="--grid")
    output = Path(output)
    shards = shard_directory(output)
    shards.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(shards)  # left by writers killed mid-write
    base_settings = dict(base_settings or {})
    client = connect(scheduler, workers, threads)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        damaged: list[Path] = []
        groups, points = plan(protocol_path, grid, base_settings, shards, max_members,
                              n_workers, damaged)
        if damaged and notify:
            notify(f"{len(damaged)} shard(s) could not be read and are trained again: "
                   f"{', '.join(str(p) for p in damaged)}")
        total = len(points)
        finished = total - sum(len(g) for g in groups)
        if progress:
            progress(finished, total)
        futures = {client.submit(train_group, str(protocol_path), base_settings, group,
                                 str(shards), threads, retries=retries, pure=False,
                                 priority=len(groups) - rank): group
                   for rank, group in enumerate(groups)}
        from distributed import as_completed
        done = finished
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
            if progress:
                progress(done, total)
    finally:
        client.close()
        if not scheduler and getattr(client, "cluster", None) is not None:
            client.cluster.close()
    dataset = combine(grid, points, shards, protocol_path)
    from .results import save
    save(dataset, output)
    # every task is done: what is left are checkpoints of groups planned before and the
    # temporary files of writers killed mid-write
    for leftover in shards.glob("group_*.checkpoint.pt"):
        leftover.unlink(missing_ok=True)
    remove_stale_temporaries(shards)
    return dataset


def combine(grid: dict[str, list], points: list[GridPoint], shards: Path,
            protocol_path: str) -> xr.Dataset:
    """Stack the shards of every grid point along one dim per grid key (attrs that differ
    between points kept as ``network_<attr>`` variables, `bioplast.results.stack_networks`)."""
    from .results import fill_values, stack_networks, without_encoding
    keys = list(grid)
    loaded = [xr.load_dataset(shards / f"{point.name}.nc") for point in points]
    taken = {str(name) for dataset in loaded for name in dataset.variables}
    dims = dim_names(keys, taken)
    datasets = dict(zip((point.index for point in points), stack_networks(loaded)))

    def nest(prefix: tuple[int, ...]):
        depth = len(prefix)
        if depth == len(keys):
            return datasets[prefix]
        return [nest(prefix + (i,)) for i in range(len(grid[keys[depth]]))]
    combined = xr.combine_nested(
        nest(()), concat_dim=[dims[key] for key in keys], join="outer", coords="different",
        compat="equals", combine_attrs="drop_conflicts", fill_value=fill_values(loaded))
    combined = without_encoding(combined)
    combined = combined.transpose(*[dims[key] for key in keys], ...)
    combined = combined.assign_coords({dims[key]: (dims[key], _coordinate(grid[key]),
                                                   {"key": key}) for key in keys})
    combined.attrs.update({schema.ATTR_KIND: "sweep", "sweep_grid": json.dumps(grid,
                                                                                 default=str),
                           "sweep_protocol_file": str(protocol_path)})
    combined.attrs.pop(schema.ATTR_SEED, None)
    return combined


def _coordinate(values: list) -> np.ndarray:
    """Grid values as a coordinate: numbers stay numbers, anything else becomes text."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values)
    return np.asarray([json.dumps(v) if not isinstance(v, str) else v for v in values])
