"""Sweeps on Dask against their reference, the single runs of every grid point; a killed
worker, a killed sweep re-run, and an unreachable scheduler."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

from bioplast import cli
from bioplast.protocol import load_protocol
from bioplast.training import train

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = """\
name: sweep_small
seed: 0
model: {file: leaky_rate, n_units: 16}
task: {name: delayed_cue, delay: 20 ms}
rule: {name: bptt, optimizer: {name: adam, lr: 0.01}}
training: {epochs: EPOCHS, steps_per_epoch: 5, batch_size: 16, eval_batches: 1}
backend: {name: torch, dtype: float64}
record: {trials: 2}
"""
GRID = ["--grid", "rule.optimizer.lr=0.003,0.03", "--grid", "seed=0,1,2"]


def write_protocol(tmp_path, epochs=3):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.replace("EPOCHS", str(epochs)))
    return path


def check_against_single_runs(path, dataset, points):
    for lr, seed in points:
        single = train(load_protocol(path, {"rule.optimizer.lr": lr, "seed": seed}))
        point = dataset.sel(lr=lr, seed=seed)
        np.testing.assert_allclose(point["W_rec"].values, single.params["W_rec"], rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(point["loss"].values, single.history.loss, rtol=1e-10)


def test_sweep_equals_the_single_runs(tmp_path):
    path = write_protocol(tmp_path)
    out = tmp_path / "sweep.nc"
    assert cli.main(["sweep", str(path), *GRID, "--workers", "2", "-o", str(out),
                     "--quiet"]) == 0
    dataset = xr.load_dataset(out)
    assert dataset["W_rec"].dims == ("lr", "seed", "unit", "presynaptic")
    assert list(dataset["lr"].values) == [0.003, 0.03]
    assert list(dataset["seed"].values) == [0, 1, 2]
    assert dataset["lr"].attrs["key"] == "rule.optimizer.lr"
    assert (dataset["network_status"].values == "complete").all()
    check_against_single_runs(path, dataset, [(lr, s) for lr in (0.003, 0.03) for s in (0, 1, 2)])
    assert cli.main(["plot", str(out), "-o", str(tmp_path / "sweep.png"), "--quiet"]) == 0
    assert cli.main(["analyze", str(out), "--select", "lr=0.03", "--select", "seed=1",
                     "--steps", "300", "-o", str(tmp_path / "a.nc"), "--quiet"]) == 0
    assert cli.main(["analyze", str(out), "-o", str(tmp_path / "b.nc"), "--quiet"]) == 2


def sweep_process(path, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "bioplast", "sweep", str(path), *GRID,
                             "--workers", "2", "--max-members", "1", "-o", str(out), "--quiet",
                             *extra], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_shards(shards: Path, count: int, process, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if shards.exists() and len(list(shards.glob("p*.nc"))) >= count:
            return
        if process.poll() is not None:
            pytest.fail(f"the sweep ended early: {process.communicate()}")
        time.sleep(0.05)
    pytest.fail("no shards appeared")


def assert_clean_shards(shards: Path):
    names = sorted(p.name for p in shards.iterdir())
    assert len([n for n in names if n.startswith("p") and n.endswith(".nc")]) == 6, names
    assert not [n for n in names if not n.endswith(".nc")], names  # no temp files, checkpoints
    for name in names:
        xr.load_dataset(shards / name)  # every shard is readable


def test_a_killed_worker_does_not_lose_or_corrupt_points(tmp_path):
    path = write_protocol(tmp_path, epochs=12)
    out = tmp_path / "sweep.nc"
    process = sweep_process(path, out)
    wait_for_shards(out.with_name("sweep.nc.shards"), 1, process)
    workers = [child for child in psutil.Process(process.pid).children(recursive=True)
               if "spawn" in " ".join(child.cmdline()) or "forkserver" in
               " ".join(child.cmdline())]
    assert workers, [c.cmdline() for c in psutil.Process(process.pid).children(recursive=True)]
    workers[0].kill()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert_clean_shards(out.with_name("sweep.nc.shards"))
    check_against_single_runs(path, xr.load_dataset(out), [(0.03, 2)])


def dead_writers_temporary(directory: Path, name: str) -> Path:
    """A temporary as a writer killed mid-write leaves it (its process no longer runs)."""
    from bioplast.files import _host
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    path = directory / f".{name}.{_host()}-{gone}.abc123.tmp"
    path.write_bytes(b"\x89HDF partial")
    return path


def test_killing_the_sweep_and_rerunning_finishes_only_the_missing_points(tmp_path):
    """kill -9 of the whole sweep, then a crash-damaged shard and a dead writer's temporary:
    the re-run skips the intact shards, trains the damaged point again (and says so) and
    removes the temporary; every point equals its single run."""
    path = write_protocol(tmp_path, epochs=12)
    out = tmp_path / "sweep.nc"
    shards = out.with_name("sweep.nc.shards")
    process = sweep_process(path, out)
    wait_for_shards(shards, 2, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("p*.nc")}
    assert 2 <= len(before) < 6 and not out.exists()
    damaged = sorted(before)[0]
    (shards / damaged).write_bytes((shards / damaged).read_bytes()[:300])  # truncated
    stale = dead_writers_temporary(shards, sorted(before)[-1])
    rerun = sweep_process(path, out)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "could not be read and are trained again" in err and damaged in err
    assert "Traceback" not in err
    for name, mtime in before.items():
        if name != damaged:
            assert (shards / name).stat().st_mtime_ns == mtime  # finished points were skipped
    assert not stale.exists()
    assert_clean_shards(shards)
    result = xr.load_dataset(out)
    retrained = json.loads(xr.load_dataset(shards / damaged).attrs["sweep_point"])
    check_against_single_runs(path, result, [(0.003, 0), (0.03, 2),
                                             (retrained["rule.optimizer.lr"],
                                              retrained["seed"])])


def test_an_unreachable_scheduler_fails_fast(tmp_path, capsys):
    path = write_protocol(tmp_path)
    started = time.monotonic()
    code = cli.main(["sweep", str(path), "--grid", "seed=0,1", "--scheduler",
                     "tcp://127.0.0.1:9", "-o", str(tmp_path / "s.nc")])
    assert code == 2 and time.monotonic() - started < 30
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_grid_errors_name_the_point(tmp_path, capsys):
    path = write_protocol(tmp_path)
    code = cli.main(["sweep", str(path), "--grid", "rule.optimizer.lr=0.01,-1", "-o",
                     str(tmp_path / "s.nc")])
    err = capsys.readouterr().err
    assert code == 2 and "rule.optimizer.lr=-1" in err and "lr" in err


def test_changed_protocols_rerun_and_points_of_different_sizes_stack(tmp_path):
    """A re-run with other settings does not reuse the old shards; grid keys that change
    the model's size or name a parameter (model.tau) stack with padding and per-point
    attrs, and one point can be selected and analysed."""
    path = write_protocol(tmp_path, epochs=2)
    out = tmp_path / "s.nc"
    grid = ["--grid", "model.n_units=4,6", "--grid", "model.tau=10 ms,20 ms"]
    assert cli.main(["sweep", str(path), *grid, "--workers", "1", "-o", str(out),
                     "--quiet"]) == 0
    assert cli.main(["sweep", str(path), *grid, "--set", "training.epochs=3", "--workers",
                     "1", "-o", str(out), "--quiet"]) == 0
    dataset = xr.load_dataset(out)
    assert dataset.sizes["epoch"] == 3 and dataset["W_rec"].dims[:2] == ("n_units", "model_tau")
    assert dataset["tau"].dims == ("n_units", "model_tau")  # the parameter is kept
    small = dataset["W_rec"].sel(n_units=4, model_tau="10 ms").values
    assert np.isfinite(small[:4, :4]).all() and np.isnan(small[4:]).all()
    assert cli.main(["analyze", str(out), "--select", "n_units=4", "--select",
                     "model_tau=10 ms", "--steps", "200", "-o", str(tmp_path / "a.nc"),
                     "--quiet"]) == 0


def _malloc_trim_setting():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_the_default_allocator():
    """Dask's nanny would set MALLOC_TRIM_THRESHOLD_=65536 in its workers, which made
    training there 2.3x slower than in the calling process (measured); `connect` drops it."""
    from bioplast.sweep import connect
    client = connect(None, 1, 1)
    try:
        assert client.submit(_malloc_trim_setting, pure=False).result() is None
    finally:
        client.close()
        client.cluster.close()


def test_the_costliest_groups_start_first(tmp_path):
    """Groups of longer trials (and more members) are planned first, so that the last
    task to start is a short one (longest-processing-time-first scheduling)."""
    from bioplast.sweep import Layout, plan_groups, survey
    path = write_protocol(tmp_path)
    points, work = survey(str(path), {"task.delay": ["20 ms", "200 ms", "80 ms"],
                                      "seed": [0, 1]}, {}, tmp_path, Layout((3, 2)), [])
    assert len(points) == len(work) == 6
    groups = plan_groups(work, 64, 1)
    assert [group[0].settings["task.delay"] for group in groups] == ["200 ms", "80 ms",
                                                                     "20 ms"]


def test_grid_dims_are_named_after_what_a_name_key_names():
    """Hand-written expectations of `dim_names`: the last part, what a ``.name`` key names,
    the whole path where two keys would share a dim or a variable has the name."""
    from bioplast.sweep import dim_names
    assert dim_names(["rule.name", "seed"]) == {"rule.name": "rule", "seed": "seed"}
    assert dim_names(["task.name", "regularizers.0.name", "rule.optimizer.lr"]) == {
        "task.name": "task", "regularizers.0.name": "regularizers_0",
        "rule.optimizer.lr": "lr"}
    assert dim_names(["rule.name", "model.rule"]) == {"rule.name": "rule_name",
                                                      "model.rule": "model_rule"}
    assert dim_names(["rule.name"], taken={"rule"}) == {"rule.name": "rule_name"}


def test_a_sweep_over_rules_switches_their_options_and_names_its_dim_rule(tmp_path, capsys):
    """Regressions: a sweep over ``rule.name`` named its dim ``name``, ``bioplast info``
    printed ``rule '?'`` for it, and a protocol holding e-prop's options failed at the BPTT
    point. Each point is checked against the single run of its rule (switched the same way
    by `load_protocol`)."""
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.replace("EPOCHS", "1").replace(
        "rule: {name: bptt,", "rule: {name: eprop, feedback: random,"))
    out = tmp_path / "rules.nc"
    assert cli.main(["sweep", str(path), "--grid", "rule.name=bptt,eprop", "--grid",
                     "seed=0", "--workers", "1", "-o", str(out), "--quiet"]) == 0
    dataset = xr.load_dataset(out)
    assert dataset["loss"].dims == ("rule", "seed", "epoch")
    assert list(dataset["rule"].values) == ["bptt", "eprop"]
    assert dataset["rule"].attrs["key"] == "rule.name"
    for rule in ("bptt", "eprop"):
        single = train(load_protocol(path, {"rule.name": rule, "seed": 0}))
        np.testing.assert_allclose(dataset["W_rec"].sel(rule=rule, seed=0).values,
                                   single.params["W_rec"], rtol=1e-10, atol=1e-12)
    capsys.readouterr()
    assert cli.main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "rule 'bptt', 'eprop':" in shown and "'?'" not in shown
