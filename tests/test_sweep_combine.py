"""The streamed combine step of a sweep against xarray stacking every shard in memory, and
its memory: one shard at a time."""

import contextlib
import shutil
import tracemalloc
import warnings

import numpy as np
import pytest
import xarray as xr

from bioplast import sweep
from bioplast.results import fill_values, save, stack_networks, without_encoding

PROTOCOL = """\
name: combine_small
seed: 0
model: {file: MODEL, n_units: 5}
task: {name: delayed_cue, delay: 20 ms}
rule: {name: bptt, optimizer: {name: adam, lr: 0.01}}
training: {epochs: 1, steps_per_epoch: 2, batch_size: 4, eval_batches: 1}
backend: {name: torch, dtype: float64}
record: {trials: TRIALS}
"""


def write_protocol(tmp_path, model="leaky_rate", trials=2):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.replace("MODEL", model).replace("TRIALS", str(trials)))
    return path


def train_shards(path, grid, shards):
    """Every point of ``grid`` trained (one at a time, in this process) into ``shards``."""
    shards.mkdir()
    points, work = sweep.survey(str(path), grid, {}, shards,
                                sweep.Layout(tuple(map(len, grid.values()))), [])
    for item in work:
        sweep.train_group(str(path), {}, [item.point], str(shards), 1)
    return points


def xarray_reference(grid, points, shards, protocol_path):
    """The combined dataset as xarray builds it from all shards loaded at once (what
    `combine` wrote before it streamed, attrs merged over all points at once)."""
    keys = list(grid)
    loaded = [xr.load_dataset(shards / f"{point.name}.nc") for point in points]
    dims = sweep.dim_names(keys, {str(name) for d in loaded for name in d.variables})
    datasets = dict(zip((point.index for point in points), stack_networks(loaded)))

    def nest(prefix):
        if len(prefix) == len(keys):
            return datasets[prefix]
        return [nest(prefix + (i,)) for i in range(len(grid[keys[len(prefix)]]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # xarray's coming change of defaults
        combined = xr.combine_nested(
            nest(()), concat_dim=[dims[key] for key in keys], join="outer",
            coords="different", compat="equals", combine_attrs="drop_conflicts",
            fill_value=fill_values(loaded))
    combined = without_encoding(combined).transpose(*[dims[key] for key in keys], ...)
    combined = combined.assign_coords({dims[key]: (dims[key], sweep._coordinate(grid[key]),
                                                   {"key": key}) for key in keys})
    # xarray merges the attrs row by row, which keeps an attr (the time a shard was made)
    # that agrees within some rows: `combine` keeps only what all points agree on
    combined.attrs = xr.concat(loaded, "point", join="outer", combine_attrs="drop_conflicts",
                               coords="different", compat="equals",
                               data_vars="all").attrs
    combined.attrs.update({"kind": "sweep", "sweep_grid": sweep.json.dumps(grid, default=str),
                           "sweep_protocol_file": str(protocol_path)})
    combined.attrs.pop("seed", None)
    return combined


@pytest.mark.parametrize("model, grid", [
    # sizes and epoch counts differ: padding along unit, presynaptic and epoch, and the
    # population coordinate differs along n_units only
    ("ei_rate", {"model.n_units": [5, 10], "training.epochs": [1, 2]}),
    # trials of different lengths; the points that record no trials lack their variables
    # and dims
    ("leaky_rate", {"record.trials": [0, 2], "task.delay": ["10 ms", "30 ms"],
                    "seed": [0, 1]}),
])
def test_combine_writes_what_xarray_stacks(tmp_path, model, grid):
    path = write_protocol(tmp_path, model)
    shards = tmp_path / "shards"
    points = train_shards(path, grid, shards)
    assert sweep.combine(grid, points, shards, str(path), tmp_path / "out.nc") == \
        tmp_path / "out.nc"
    save(xarray_reference(grid, points, shards, str(path)), tmp_path / "reference.nc")
    streamed = xr.load_dataset(tmp_path / "out.nc")
    reference = xr.load_dataset(tmp_path / "reference.nc")
    xr.testing.assert_identical(streamed, reference)
    for name, variable in reference.variables.items():
        assert (streamed[name].dims, streamed[name].dtype) == (variable.dims, variable.dtype), name
    if model == "ei_rate":
        assert streamed["population"].dims == ("n_units", "unit")
        assert streamed.sizes["epoch"] == 2 and np.isnan(streamed["loss"].values[:, 0, 1]).all()
        assert (streamed["level"].values[:, 0, 1] == -1).all()  # padded, still integers
    else:
        assert streamed["r"].sel(trials=0).isnull().all()
        assert streamed["r"].sel(trials=2, delay="30 ms").notnull().all()
        assert streamed["r"].sel(trials=2, delay="10 ms").isnull().any()  # shorter trials
        cue = streamed["condition_cue"]  # integers, padded with NaN where lacking
        assert cue.dtype == float and cue.sel(trials=0).isnull().all()


def test_combine_holds_one_shard_at_a_time(tmp_path, monkeypatch):
    """40 points: at most one shard is open at a time, and the memory combine allocates
    stays below 3 points' values while the output holds all 40."""
    path = write_protocol(tmp_path, trials=256)
    shards = tmp_path / "shards"
    grid = {"seed": list(range(40))}
    trained = train_shards(path, {"seed": [0]}, shards)
    points = [sweep.GridPoint(point.index, point.settings, "copy")
              for point in sweep.grid_points(grid)]
    for point in points:
        shutil.copy(shards / f"{trained[0].name}.nc", shards / f"{point.name}.nc")
    one_point = sum(v.nbytes for v in xr.load_dataset(shards / f"{points[0].name}.nc")
                    .variables.values())
    assert one_point > 300_000
    real_open, open_now, most = sweep._open, [], [0]

    @contextlib.contextmanager
    def counting_open(shard):
        with real_open(shard) as dataset:
            open_now.append(shard)
            most[0] = max(most[0], len(open_now))
            yield dataset
        open_now.remove(shard)
    monkeypatch.setattr(sweep, "_open", counting_open)
    tracemalloc.start()
    try:
        sweep.combine(grid, points, shards, str(path), tmp_path / "out.nc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert most[0] == 1 and not open_now
    assert peak < 3 * one_point, (peak, one_point)
    out = xr.load_dataset(tmp_path / "out.nc")
    assert sum(v.nbytes for v in out.data_vars.values()) > 30 * one_point
    np.testing.assert_array_equal(out["r"].values[39], out["r"].values[0])
