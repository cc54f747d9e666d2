"""Planning a sweep: finished shards found before any cluster starts, one protocol load per
structure, and the errors of bad points."""

import pytest
import xarray as xr

import bioplast.protocol
from bioplast import sweep
from bioplast.errors import InputError
from bioplast.threads import per_process

PROTOCOL = """\
name: plan_small
seed: 0
model: {file: leaky_rate, n_units: 6}
task: {name: delayed_cue, delay: 20 ms}
rule: {name: bptt, optimizer: {name: adam, lr: 0.01}}
training: {epochs: 2, steps_per_epoch: 2, batch_size: 4, eval_batches: 1}
backend: {name: torch, dtype: float64}
record: {trials: 2}
"""


@pytest.fixture
def protocol(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL)
    return path


def survey(path, grid, base_settings=None, shards=None):
    return sweep.survey(str(path), grid, base_settings or {}, shards or path.parent,
                        sweep.Layout(tuple(map(len, grid.values()))), [])


def test_a_rerun_trains_only_what_is_missing_and_starts_no_cluster_when_nothing_is(
        protocol, tmp_path, monkeypatch):
    grid = {"rule.optimizer.lr": [0.01, 0.03], "seed": [0, 1]}
    out = tmp_path / "s.nc"
    trained = []
    real_train = sweep._train

    def recording_train(*args, **kwargs):
        trained.append(([item.point.index for item in args[2]], kwargs["threads"]))
        return real_train(*args, **kwargs)
    monkeypatch.setattr(sweep, "_train", recording_train)
    sweep.run_sweep(str(protocol), grid, out, workers=1).close()
    assert trained == [([(0, 0), (0, 1), (1, 0), (1, 1)], per_process(1))]
    first = xr.load_dataset(out)
    shards = sweep.shard_directory(out)
    written = {p.name: p.stat().st_mtime_ns for p in shards.glob("p*.nc")}
    assert len(written) == 4

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for a finished sweep")
    monkeypatch.setattr(sweep, "connect", no_cluster)
    progress = []
    sweep.run_sweep(str(protocol), grid, out, workers=1,
                    progress=lambda done, total: progress.append((done, total))).close()
    assert progress == [(4, 4)] and len(trained) == 1
    xr.testing.assert_identical(xr.load_dataset(out), first)
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("p*.nc")} == written

    monkeypatch.undo()
    monkeypatch.setattr(sweep, "_train", recording_train)
    missing = sorted(written)[2]
    (shards / missing).unlink()
    sweep.run_sweep(str(protocol), grid, out, workers=1).close()
    assert trained[1][0] == [(1, 0)] and missing.startswith("p1-0_")
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("p*.nc")
            if p.name != missing} == {n: t for n, t in written.items() if n != missing}
    # the retrained point's other values agree; its creation time is a variable only where
    # the points' times differ (shards written within the same second share the attribute)
    timed = ["network_created", "wall_time"]
    xr.testing.assert_allclose(xr.load_dataset(out).drop_vars(timed, errors="ignore"),
                               first.drop_vars(timed, errors="ignore"), rtol=1e-10)


def test_points_that_differ_in_member_settings_share_one_protocol_load(protocol,
                                                                       monkeypatch):
    """5 learning rates x 4 seeds x 2 sizes: one load per size, plus one per learning rate
    and one per seed for each size (20 instead of 40); every point still has its own
    digest, the same in every survey, and a changed protocol changes every digest."""
    loads = []
    real_load = bioplast.protocol.load_protocol

    def counting_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)
    monkeypatch.setattr(bioplast.protocol, "load_protocol", counting_load)
    grid = {"model.n_units": [4, 6], "rule.optimizer.lr": [0.001, 0.003, 0.01, 0.03, 0.1],
            "seed": [0, 1, 2, 3]}
    points, work = survey(protocol, grid)
    assert len(loads) == 2 * (1 + 5 + 4)
    assert len(points) == len(work) == 40 and len({p.name for p in points}) == 40
    assert [p.name for p in survey(protocol, grid)[0]] == [p.name for p in points]
    edited = [p.name for p in survey(protocol, grid, {"training.epochs": 3})[0]]
    assert not set(edited) & {p.name for p in points}
    # ensembles: the points of one size share one ensemble key
    assert len({item.key for item in work}) == 2


@pytest.mark.parametrize("grid, bad", [
    ({"rule.optimizer.lr": [0.01, -1], "seed": [0, 1]}, {"rule.optimizer.lr": -1, "seed": 0}),
    ({"seed": [0, -1], "model.n_units": [4, 0]}, {"seed": 0, "model.n_units": 0}),
    # a point bad in a member setting and in its structure: the error load_protocol gives
    ({"model.n_units": [0], "seed": [-1]}, {"model.n_units": 0, "seed": -1}),
])
def test_a_bad_point_gets_the_error_of_its_own_protocol(protocol, grid, bad):
    with pytest.raises(InputError) as expected:
        bioplast.protocol.load_protocol(protocol, bad)
    with pytest.raises(InputError) as raised:
        survey(protocol, grid)
    described = ", ".join(f"{key}={value}" for key, value in bad.items())
    assert raised.value.message == f"grid point {described}: {expected.value.message}"
    assert (raised.value.file, raised.value.line, raised.value.key) == \
        (expected.value.file, expected.value.line, expected.value.key)
