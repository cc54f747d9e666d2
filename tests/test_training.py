"""Training end to end: learning, curricula, checkpoints and resume, divergence, protocol
errors, and re-running a result from the protocol it stores."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from bioplast import cli
from bioplast.errors import InputError
from bioplast.protocol import load_protocol
from bioplast.results import network_at_epoch, network_at_level, select_network
from bioplast.curricula import Curriculum
from bioplast.training import History, Trainer, checkpoint_path, train

REPO = Path(__file__).resolve().parent.parent
HISTORY = ["loss", "grad_norm", "eval_loss", "accuracy", "reliability", "level"]

SMALL_PARITY = """\
name: small_parity
seed: 3
model: {file: leaky_tau, n_units: 32}
task: {name: n_parity, n: 2, curriculum: multi_head, max_n: 8}
rule: {name: bptt, optimizer: {name: adam, lr: 0.003}, grad_clip: 2.0}
training: {epochs: 8, steps_per_epoch: 12, batch_size: 32, eval_batches: 2,
           checkpoint_every: 1}
backend: {name: torch, dtype: float32}
record: {trials: 4}
"""


def write(tmp_path, text, name="protocol.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def bioplast(*args):
    return subprocess.run([sys.executable, "-m", "bioplast", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def assert_same_run(a: xr.Dataset, b: xr.Dataset):
    for name in HISTORY:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    for name in ("W_rec", "W_in", "W_out", "b", "tau", "b_out"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_quickstart_reaches_its_target():
    result = train(load_protocol(REPO / "protocols" / "quickstart.yaml"))
    assert result.status == "complete"
    assert np.nanmean(result.history.accuracy[-1]) >= 0.99
    assert result.history.eval_loss[-1] < 0.05 * result.history.eval_loss[0]


def test_multi_head_parity_advances_three_levels_with_trained_tau():
    protocol = load_protocol(REPO / "protocols" / "nparity_multi_head.yaml", {
        "model.n_units": 64, "training.epochs": 20, "training.steps_per_epoch": 50,
        "training.batch_size": 64, "training.eval_batches": 4, "task.max_n": 10,
        "rule.optimizer": {"name": "adam", "lr": 0.003}})
    tau_before = protocol.model.init_params(protocol.seed)["tau"]
    result = train(protocol)
    assert max(result.history.level) >= 2 + 3
    assert result.history.level == sorted(result.history.level)
    tau = result.params["tau"]
    assert np.all(tau >= 1)  # the bound tau >= 1 step holds after every update
    assert not np.array_equal(tau, tau_before)  # and tau did train
    assert np.all(np.diag(result.params["W_rec"]) == 0)  # no autapses, kept by projection


def test_run_writes_a_complete_result(tmp_path):
    protocol = write(tmp_path, SMALL_PARITY)
    out = tmp_path / "run.nc"
    assert cli.main(["run", str(protocol), "-o", str(out), "--quiet"]) == 0
    ds = xr.open_dataset(out)
    assert ds.attrs["status"] == "complete" and ds.attrs["kind"] == "training"
    assert ds["accuracy"].dims == ("epoch", "head") and ds.sizes["head"] == 7
    assert ds["reliability"].dims == ("epoch", "head") and ds["reliability"].attrs["long_name"]
    active = np.isfinite(ds["accuracy"].values)
    np.testing.assert_array_equal(np.isfinite(ds["reliability"].values), active)
    assert np.all((ds["reliability"].values[active] > 0) & (ds["reliability"].values[active] < 1))
    assert list(ds["head_n"].values) == list(range(2, 9))
    assert ds["r"].dims == ("trial", "time", "unit") and ds.sizes["trial"] == 4
    for name in ("inputs", "targets", "mask", "outputs", "loss", "level", "wall_time"):
        assert name in ds
    assert "n_parity" in ds.attrs["protocol"] and ds.attrs["rule"] == "bptt"
    assert checkpoint_path(out).exists()
    saved = torch.load(checkpoint_path(out), weights_only=True)
    assert saved["next_epoch"] == ds.sizes["epoch"]
    figure = tmp_path / "run.png"
    assert cli.main(["plot", str(out), "-o", str(figure)]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_training_stops_after_the_last_curriculum_level(tmp_path):
    protocol = load_protocol(write(tmp_path, SMALL_PARITY), {"task.max_n": 3,
                                                             "training.epochs": 40})
    result = train(protocol)
    assert "last curriculum level (N = 3) passed" in result.message
    assert result.history.level[-1] == 3 and len(result.history) < 40
    assert np.all(result.history.accuracy_array()[-1] > 0.98)


def test_dales_law_holds_after_training():
    protocol = load_protocol(REPO / "protocols" / "quickstart.yaml", {
        "model.file": "ei_rate", "model.n_units": 20, "model.readout.activation": "sigmoid",
        "training.epochs": 2, "rule.optimizer.lr": 0.05})
    before = protocol.model.init_params(protocol.seed)["W_rec"]
    w = train(protocol).params["W_rec"]
    assert not np.array_equal(w, before)
    assert np.all(w[:, :16] >= 0) and np.all(w[:, 16:] <= 0) and np.all(np.diag(w) == 0)


def test_a_result_re_runs_from_its_stored_protocol(tmp_path):
    first = tmp_path / "first.nc"
    assert cli.main(["run", str(write(tmp_path, SMALL_PARITY)), "-o", str(first),
                     "--quiet"]) == 0
    stored = xr.open_dataset(first).attrs["protocol"]
    again = tmp_path / "again.nc"
    assert cli.main(["run", str(write(tmp_path, stored, "stored.yaml")), "-o", str(again),
                     "--quiet"]) == 0
    assert_same_run(xr.load_dataset(first), xr.load_dataset(again))
    third = tmp_path / "third.nc"
    assert cli.main(["run", str(first), "-o", str(third), "--quiet"]) == 0
    assert_same_run(xr.load_dataset(first), xr.load_dataset(third))


def wait_for_checkpoint(path: Path, epoch: int, process, timeout=120.0):
    started = time.time()
    while time.time() - started < timeout:
        if process.poll() is not None:
            raise AssertionError("the run ended before it could be killed")
        if path.exists():
            try:
                if torch.load(path, weights_only=True)["next_epoch"] >= epoch:
                    return
            except (RuntimeError, EOFError, KeyError):
                pass  # the rename has not happened yet
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kill_9_during_training_then_resume_gives_the_same_result(tmp_path, dtype):
    protocol = write(tmp_path, SMALL_PARITY.replace("float32", dtype))
    reference = tmp_path / "reference.nc"
    assert bioplast("run", protocol, "-o", reference, "--quiet").returncode == 0
    out = tmp_path / "killed.nc"
    kill_after = int(np.random.default_rng(int(time.time())).integers(2, 6))
    process = subprocess.Popen([sys.executable, "-m", "bioplast", "run", str(protocol), "-o",
                                str(out), "--quiet"], cwd=REPO)
    wait_for_checkpoint(checkpoint_path(out), kill_after, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    resumed = bioplast("run", protocol, "-o", out, "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(xr.load_dataset(reference), xr.load_dataset(out))


KILL_WHILE_WRITING = """
import os, signal, sys, torch
calls = 0
original = torch.save
def save_then_die(obj, path, *args, **kwargs):
    global calls
    calls += 1
    if calls == {at}:  # write part of the file, then die like kill -9
        with open(path, "wb") as handle:
            handle.write(b"PK\\x03\\x04 partial checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(obj, path, *args, **kwargs)
torch.save = save_then_die
from bioplast.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    protocol = write(tmp_path, SMALL_PARITY)
    reference = tmp_path / "reference.nc"
    assert bioplast("run", protocol, "-o", reference, "--quiet").returncode == 0
    out = tmp_path / "killed.nc"
    script = KILL_WHILE_WRITING.replace("{at}", "4")
    killed = subprocess.run([sys.executable, "-c", script, "run", str(protocol), "-o",
                             str(out), "--quiet"], cwd=REPO)
    assert killed.returncode == -signal.SIGKILL
    saved = torch.load(checkpoint_path(out), weights_only=True)  # not corrupt
    assert saved["next_epoch"] == 3  # the fourth write died; the third is intact
    assert not out.exists()
    kept = checkpoint_path(out).read_bytes()
    fresh = bioplast("run", protocol, "-o", out, "--quiet")  # forgot --resume
    assert fresh.returncode == 2 and "--resume" in fresh.stderr and "--overwrite" in \
        fresh.stderr and "Traceback" not in fresh.stderr
    assert checkpoint_path(out).read_bytes() == kept  # hours of training are not thrown away
    resumed = bioplast("run", protocol, "-o", out, "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(xr.load_dataset(reference), xr.load_dataset(out))


KILL_WHILE_WRITING_THE_RESULT = """
import os, signal, sys, xarray
def write_then_die(self, path, *args, **kwargs):
    with open(path, "wb") as handle:  # part of the file, then die like kill -9
        handle.write(b"\\x89HDF\\r\\n partial result")
    os.kill(os.getpid(), signal.SIGKILL)
xarray.Dataset.to_netcdf = write_then_die
from bioplast.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_9_while_writing_the_result_keeps_the_old_one_and_a_rerun_finishes(tmp_path):
    protocol = write(tmp_path, SMALL_PARITY.replace("epochs: 8", "epochs: 3"))
    reference = tmp_path / "reference.nc"
    assert bioplast("run", protocol, "-o", reference, "--quiet").returncode == 0
    out = tmp_path / "killed.nc"
    out.write_bytes(b"the result of an earlier run")
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_WRITING_THE_RESULT, "run",
                             str(protocol), "-o", str(out), "--quiet"], cwd=REPO)
    assert killed.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"the result of an earlier run"  # never a partial file
    assert len(list(tmp_path.glob(".killed.nc.*.tmp"))) == 1  # what the killed writer left
    rerun = bioplast("run", protocol, "-o", out, "--resume", "--quiet")
    assert rerun.returncode == 0, rerun.stderr
    assert_same_run(xr.load_dataset(reference), xr.load_dataset(out))
    assert not list(tmp_path.glob(".killed.nc.*.tmp"))  # the stale temporary is gone


def test_resume_refuses_a_changed_model_file_and_says_what_changed(tmp_path, capsys):
    model = tmp_path / "mine.yaml"
    model.write_text((REPO / "models" / "leaky_tau.yaml").read_text())
    path = write(tmp_path, SMALL_PARITY.replace("file: leaky_tau", "file: mine.yaml")
                 .replace("epochs: 8", "epochs: 2"))
    out = tmp_path / "o.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    model.write_text(model.read_text().replace("name: leaky_tau", "name: leaky_tau_edited"))
    kept = checkpoint_path(out).read_bytes()
    assert cli.main(["run", str(path), "-o", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the model file changed" in err and "leaky_tau_edited" in err
    assert str(checkpoint_path(out)) in err and len(err.strip().splitlines()) == 1
    assert checkpoint_path(out).read_bytes() == kept


DIVERGING = """\
name: diverging
seed: 3
model: {file: leaky_current, n_units: 32}
task: {name: flip_flop, n_bits: 2, duration: 30 ms}
rule: {name: bptt, optimizer: {name: sgd, lr: 0.15}}
training: {epochs: 10, steps_per_epoch: 10, batch_size: 16, eval_batches: 1,
           checkpoint_every: 1}
record: {trials: 2}
"""


def test_a_diverging_run_exits_1_and_keeps_its_history(tmp_path, capsys):
    """This seed and learning rate train one epoch, then blow up in the second."""
    out = tmp_path / "diverged.nc"
    code = cli.main(["run", str(write(tmp_path, DIVERGING)), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "diverged" in err and f"last good checkpoint: {checkpoint_path(out)}" in err
    ds = xr.load_dataset(out)
    assert ds.attrs["status"] == "diverged" and "epoch 1" in ds.attrs["stop_reason"]
    assert ds.sizes["epoch"] == 2  # the complete first epoch and the one that diverged
    assert np.isfinite(ds["loss"].values[0]) and np.isnan(ds["eval_loss"].values[1])
    assert all(np.all(np.isfinite(ds[name].values)) for name in ("W_rec", "W_in", "W_out"))
    saved = torch.load(checkpoint_path(out), weights_only=True)
    assert saved["next_epoch"] == 1


def test_an_absurd_learning_rate_diverges_at_once(tmp_path, capsys):
    out = tmp_path / "absurd.nc"
    text = DIVERGING.replace("lr: 0.15", "lr: 1.0e+12")
    assert cli.main(["run", str(write(tmp_path, text)), "-o", str(out), "--quiet"]) == 1
    assert "no checkpoint was written yet" in capsys.readouterr().err
    ds = xr.load_dataset(out)
    assert ds.attrs["status"] == "diverged" and ds.sizes["epoch"] == 1
    assert not checkpoint_path(out).exists()


@pytest.mark.parametrize("edit,key,words", [
    (("training: {epochs", "training: {unknown_key: 1, epochs"), "training.unknown_key",
     "unknown key"),
    (("epochs: 8", "epochs: many"), "training.epochs", "integer"),
    (("file: leaky_tau", "file: models/missing.yaml"), "model.file", "not found"),
    (("name: n_parity", "name: n_parody"), "task.name", "unknown task 'n_parody'"),
    (("name: bptt", "name: backprop"), "rule.name", "unknown rule 'backprop'"),
    (("lr: 0.003", "lr: -0.1"), "rule.optimizer.lr", "greater than 0"),
    (("max_n: 8", "max_n: 1"), "task", "below the starting n"),
    (("n_units: 32", "n_unit: 32"), "model.n_unit", "neither a setting"),
    (("seed: 3", "seed: [1]"), "seed", "integer"),
    (("lr: 0.003", "lr: .inf"), "rule.optimizer.lr", "finite"),
    (("lr: 0.003}", "lr: 0.003, betas: [0.9, 1.5]}"), "rule.optimizer.betas[1]", "less than 1"),
    (("seed: 3", "seed: -1"), "seed", "greater than or equal to 0"),
    (("seed: 3", "seed: 99999999999999999999999"), "seed", "less than"),
    (("max_n: 8}", "max_n: 8, threshold: 1.0}"), "task.threshold", "less than 1"),
    (("batch_size: 32", "batch_size: true"), "training.batch_size", "integer"),
    (("name: small_parity", "name: ../escape"), "name", "pattern"),
    (("model: {file: leaky_tau, n_units: 32}", "model: 5"), "model", "model name or path"),
    (("backend: {name: torch, dtype: float32}", "backend: [torch]"), "backend",
     "must be a mapping"),
    (("model: {file: leaky_tau, n_units: 32}",
      "model: {file: leaky_tau, n_units: 32, readout.activation: bogus}"),
     "model.readout.activation", "unknown activation"),
    (("model: {file: leaky_tau, n_units: 32}",
      "model: {file: leaky_tau, n_units: 32, couplings: {W_rec: {init: bogus}}}"),
     "model.couplings.W_rec.init", "as a value or an initializer"),
    (("backend: {name: torch, dtype: float32}", "backend: {name: brian2, target: cython}"),
     "backend.name", "needs a backend with differentiable"),
    (("backend: {name: torch, dtype: float32}", "backend: {name: torch, target: cython}"),
     "backend", "target applies to name: brian2"),
    (("record: {trials: 4}", "regularizers: [{name: tcr, weight: 1}]\nrecord: {trials: 4}"),
     "regularizers[0].name", "unknown regularizer 'tcr'"),
    (("record: {trials: 4}", "regularizers: [{name: weight_l2}]\nrecord: {trials: 4}"),
     "regularizers[0]", "missing required key 'weight'"),
    (("record: {trials: 4}",
      "regularizers: [{name: weight_l2, weight: 1, params: [W_foo]}]\nrecord: {trials: 4}"),
     "regularizers[0].params", "'W_foo' not trainable"),
    (("record: {trials: 4}",
      "regularizers: [{name: activity_l2, weight: 1, variables: [b]}]\nrecord: {trials: 4}"),
     "regularizers[0].variables", "'b' not recorded"),
    (("name: bptt, optimizer: {name: adam, lr: 0.003}, grad_clip: 2.0",
      "name: node_perturbation, targets: [I_foo]"), "rule.targets", "'I_foo'"),
    (("name: bptt, optimizer: {name: adam, lr: 0.003}, grad_clip: 2.0",
      "name: node_perturbation, targets: []"), "rule.targets", "an empty list"),
    pytest.param(("dtype: float32", "dtype: float32, device: cuda"), "backend.device",
                 "not available", marks=pytest.mark.skipif(torch.cuda.is_available(),
                                                           reason="this machine has CUDA")),
])
def test_protocol_errors_name_file_and_key(tmp_path, capsys, edit, key, words):
    text = SMALL_PARITY.replace(*edit)
    assert text != SMALL_PARITY
    path = write(tmp_path, text)
    code = cli.main(["run", str(path), "-o", str(tmp_path / "o.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{path}:" in err and f" {key}:" in err and words in err, err


@pytest.mark.parametrize("task,key", [
    ("{name: flip_flop, duration: 0 ms}", "task.duration"),
    ("{name: delayed_cue, response: 0 ms}", "task.response"),
    ("{name: delayed_cue, cue: 12 ms}", "task.cue"),
])
def test_task_timing_errors_point_at_the_duration(tmp_path, capsys, task, key):
    text = SMALL_PARITY.replace("{name: n_parity, n: 2, curriculum: multi_head, max_n: 8}",
                                task).replace("leaky_tau", "leaky_rate")
    path = write(tmp_path, text)
    assert cli.main(["run", str(path), "-o", str(tmp_path / "o.nc"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4: {key}:" in err, err


def test_unwritable_outputs_fail_before_training(tmp_path, capsys):
    path = write(tmp_path, SMALL_PARITY)
    assert cli.main(["run", str(path), "-o", "/proc/bioplast.nc", "--quiet"]) == 2
    assert "cannot write here" in capsys.readouterr().err


def test_resume_after_an_early_stop_trains_no_further(tmp_path):
    path = write(tmp_path, SMALL_PARITY.replace("max_n: 8", "max_n: 3").replace(
        "epochs: 8", "epochs: 40"))
    out = tmp_path / "o.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    first = xr.load_dataset(out)
    assert cli.main(["run", str(path), "-o", str(out), "--resume", "--quiet"]) == 0
    again = xr.load_dataset(out)
    assert_same_run(first, again)
    assert again.attrs["stop_reason"] == first.attrs["stop_reason"]
    assert again.attrs["resumed_from_epoch"] == first.sizes["epoch"]


def test_resume_refuses_other_settings_and_says_which(tmp_path, capsys):
    path = write(tmp_path, SMALL_PARITY.replace("epochs: 8", "epochs: 2"))
    out = tmp_path / "o.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    code = cli.main(["run", str(path), "-o", str(out), "--resume", "--set",
                     "training.batch_size=16", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "another protocol or other settings" in err and "batch_size" in err
    checkpoint_path(out).write_bytes(b"garbage")
    assert cli.main(["run", str(path), "-o", str(out), "--resume", "--quiet"]) == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_re_running_a_result_keeps_its_model(tmp_path, capsys):
    out = tmp_path / "o.nc"
    assert cli.main(["run", str(write(tmp_path, SMALL_PARITY.replace("epochs: 8", "epochs: 1"))),
                     "-o", str(out), "--quiet"]) == 0
    assert cli.main(["run", str(out), "--set", "model.file=leaky_rate", "-o",
                     str(tmp_path / "x.nc"), "--quiet"]) == 2
    assert "the model cannot change" in capsys.readouterr().err
    assert cli.main(["run", str(out), "--set", "training.epochs=-1", "-o",
                     str(tmp_path / "x.nc"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out} (attribute 'protocol'): training.epochs (from --set):" in err


def test_single_head_results_have_no_per_head_n(tmp_path):
    path = write(tmp_path, SMALL_PARITY.replace("multi_head", "single_head").replace(
        "epochs: 8", "epochs: 1"))
    out = tmp_path / "o.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    ds = xr.load_dataset(out)
    assert "head_n" not in ds.coords and ds.sizes["head"] == 1 and ds["level"].values[0] == 2


def test_sigint_stops_a_run_even_as_a_background_job(tmp_path):
    """Background jobs of a shell start with SIGINT ignored; kill -INT still ends the run
    with its result (Brian2's own handler would fail there)."""
    text = SMALL_PARITY.replace("epochs: 8", "epochs: 1000")
    out = tmp_path / "o.nc"
    process = subprocess.Popen(
        [sys.executable, "-m", "bioplast", "run", str(write(tmp_path, text)), "-o", str(out),
         "--quiet"], cwd=REPO, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for_checkpoint(checkpoint_path(out), 1, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert xr.load_dataset(out).attrs["status"] == "interrupted"


def test_set_edits_the_protocol_and_errors_name_the_key(tmp_path, capsys):
    path = write(tmp_path, SMALL_PARITY)
    protocol = load_protocol(path, {"training.epochs": 2, "model.n_units": 8})
    assert protocol.training.epochs == 2 and protocol.model.n_units == 8
    assert "epochs: 2" in protocol.text
    code = cli.main(["run", str(path), "--set", "training.epochs=-3", "-o",
                     str(tmp_path / "o.nc"), "--quiet"])
    assert code == 2 and "training.epochs (from --set):" in capsys.readouterr().err
    # errors elsewhere keep the line of the user's file, --set or not
    bad = write(tmp_path, SMALL_PARITY.replace("batch_size: 32", "batch_size: 0"), "bad.yaml")
    code = cli.main(["run", str(bad), "--set", "training.epochs=2", "-o",
                     str(tmp_path / "o.nc"), "--quiet"])
    assert code == 2 and f"{bad}:6: training.batch_size:" in capsys.readouterr().err
    # list items by index: the TCR weight of a protocol with regularizers
    tcr = REPO / "protocols" / "flip_flop_eprop_tcr.yaml"
    assert load_protocol(tcr, {"regularizers.0.weight": 0.5}).schema.regularizers[0][
        "weight"] == 0.5
    code = cli.main(["run", str(tcr), "--set", "regularizers.3.weight=1", "-o",
                     str(tmp_path / "o.nc"), "--quiet"])
    assert code == 2 and "the list has no item '3' (items 0 to 0)" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(str(p.relative_to(REPO / "protocols").with_suffix(""))
                                         for p in (REPO / "protocols").rglob("*.yaml")))
def test_shipped_protocols_run_a_tiny_epoch(name):
    """Every shipped protocol is valid and trains (shrunk to one tiny epoch)."""
    protocol = load_protocol(REPO / "protocols" / f"{name}.yaml", {
        "model.n_units": 8, "training.epochs": 1, "training.steps_per_epoch": 1,
        "training.batch_size": 4, "training.eval_batches": 1, "record.trials": 2})
    result = train(protocol)
    assert result.status == "complete" and len(result.history) == 1
    assert np.isfinite(result.history.loss[0])


def test_ctrl_c_writes_the_result_so_far(tmp_path):
    text = SMALL_PARITY.replace("epochs: 8", "epochs: 1000")
    out = tmp_path / "interrupted.nc"
    process = subprocess.Popen([sys.executable, "-m", "bioplast", "run",
                                str(write(tmp_path, text)), "-o", str(out), "--quiet"],
                               cwd=REPO, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(checkpoint_path(out), 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    ds = xr.load_dataset(out)
    assert ds.attrs["status"] == "interrupted" and ds.sizes["epoch"] >= 2


def test_record_levels_keeps_the_parameters_of_every_passed_level(tmp_path):
    """Reference: the same run stopped at the epoch a level was passed has, as its final
    parameters, exactly the parameters kept for that level; the kept levels survive a
    checkpoint round trip and an ensemble's padding."""
    text = SMALL_PARITY.replace("record: {trials: 4}", "record: {trials: 4, levels: true}") \
        .replace("n: 2, curriculum: multi_head, max_n: 8}",
                 "n: 1, curriculum: multi_head, max_n: 8, threshold: 0.7}") \
        .replace("epochs: 8", "epochs: 5")
    path = write(tmp_path, text)
    out = tmp_path / "o.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    ds = xr.load_dataset(out)
    levels = ds["passed_level"].values
    assert len(levels) >= 2 and list(levels) == list(range(1, 1 + len(levels)))
    for n in levels:  # passed in the epoch after which the history shows level n + 1
        epoch = int(ds["level_epoch"].sel(passed_level=n))
        assert ds["level"].values[epoch] == n
        assert epoch + 1 == ds.sizes["epoch"] or ds["level"].values[epoch + 1] == n + 1
    n = int(levels[1])
    epoch = int(ds["level_epoch"].sel(passed_level=n))
    short = tmp_path / "short.nc"
    assert cli.main(["run", str(path), "--set", f"training.epochs={epoch + 1}", "-o",
                     str(short), "--quiet"]) == 0
    stopped = xr.load_dataset(short)
    at_level = network_at_level(ds, n)
    for name in ("W_rec", "tau", "W_out"):
        np.testing.assert_array_equal(at_level[name].values, stopped[name].values)
    # the checkpoint of the full run holds them (read back as --resume does)
    saved = torch.load(checkpoint_path(out), weights_only=True)
    history = History(n_heads=8)
    history.load_state_dict(saved["history"][0])
    assert sorted(history.passed) == list(levels)
    np.testing.assert_array_equal(history.passed[n][1]["W_rec"],
                                  ds["level_W_rec"].sel(passed_level=n).values)
    with pytest.raises(InputError, match="no parameters kept at curriculum level N = 99"):
        network_at_level(ds, 99)
    plain = ds.drop_vars([v for v in ds.variables if str(v).startswith("level_")] +
                         ["passed_level"])
    with pytest.raises(InputError, match="record.levels: true"):
        network_at_level(plain, 2)
    # an ensemble whose members passed different numbers of levels is padded with NaN
    ensemble = tmp_path / "e.nc"
    assert cli.main(["run", str(path), "--set", "training.members=2", "-o", str(ensemble),
                     "--quiet"]) == 0
    stacked = xr.load_dataset(ensemble)
    for member in range(2):
        one = select_network(stacked, member=member)
        kept = one["level_epoch"].dropna("passed_level")["passed_level"].values
        assert np.all(np.isfinite(network_at_level(one, int(kept[0]))["tau"].values))


def test_record_snapshots_keeps_the_parameters_every_k_epochs(tmp_path):
    """Reference: the same run stopped after epoch 3 ends with the parameters kept for
    epoch 3."""
    path = write(tmp_path, SMALL_PARITY.replace("record: {trials: 4}",
                                                "record: {trials: 4, snapshots_every: 3}")
                 .replace("steps_per_epoch: 12", "steps_per_epoch: 4"))
    out, short = tmp_path / "o.nc", tmp_path / "short.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    assert cli.main(["run", str(path), "--set", "training.epochs=4", "-o", str(short),
                     "--quiet"]) == 0
    ds, stopped = xr.load_dataset(out), xr.load_dataset(short)
    assert list(ds["snapshot_epoch"].values) == [0, 3, 6, 7]
    assert ds["snapshot_W_rec"].dims == ("snapshot_epoch", "unit", "presynaptic")
    at_epoch = network_at_epoch(ds, 3)
    for name in ("W_rec", "tau", "W_out", "b"):
        np.testing.assert_array_equal(at_epoch[name].values, stopped[name].values)
    np.testing.assert_array_equal(network_at_epoch(ds, 7)["W_rec"].values, ds["W_rec"].values)
    with pytest.raises(InputError, match=r"no parameters kept at epoch 4 \(kept: 0, 3, 6, 7\)"):
        network_at_epoch(ds, 4)
    with pytest.raises(InputError, match="record.snapshots_every"):
        network_at_epoch(stopped.drop_vars([v for v in stopped.variables
                                            if str(v).startswith("snapshot_")]), 0)


@pytest.mark.parametrize("rule", ["bptt", "eprop"])
def test_scoring_on_the_training_batch(tmp_path, rule):
    """``training.score_on: training`` scores the epoch's last training batch. Reference:
    the update's own loss on that batch (one update per epoch, no regularizers): BPTT
    scores the very forward pass it trained on, so the two are equal; e-prop makes no
    plain forward pass, so its score is a forward pass of the same batch with the same
    parameters (other noise draws: equal to 1e-3 here). Scoring changes nothing in
    training: the parameters equal those of a run scored on test batches."""
    text = SMALL_PARITY.replace("bptt", rule).replace("steps_per_epoch: 12",
                                                      "steps_per_epoch: 1")
    path = write(tmp_path, text)
    scored = train(load_protocol(path, {"training.score_on": "training",
                                        "training.epochs": 3}))
    tested = train(load_protocol(path, {"training.epochs": 3}))
    tolerance = 1e-6 if rule == "bptt" else 1e-3
    np.testing.assert_allclose(scored.history.eval_loss, scored.history.loss, rtol=tolerance)
    assert not np.allclose(tested.history.eval_loss, tested.history.loss, rtol=1e-3)
    for name, value in tested.params.items():
        np.testing.assert_array_equal(scored.params[name], value, err_msg=name)
    accuracy = scored.history.accuracy_array()
    assert np.all((accuracy[:, 0] >= 0) & (accuracy[:, 0] <= 1))
    reliability = scored.history.per_head("reliability")
    assert np.all((reliability[:, 0] > 0) & (reliability[:, 0] < 1))


def test_exact_bptt_is_not_compared_with_itself():
    """The alignment with BPTT is measured for truncated BPTT, not for exact BPTT (whose
    alignment is 1 by construction: the comparison would only cost time)."""
    settings = {"training.epochs": 2, "training.alignment_every": 1,
                "training.steps_per_epoch": 2}
    protocol = load_protocol(SMALL_PARITY, settings, name="small_parity")
    exact = train(protocol).history.per_parameter("alignment")
    truncated = train(load_protocol(SMALL_PARITY, {**settings, "rule.truncation": 2},
                                    name="small_parity")).history.per_parameter("alignment")
    assert np.isnan(exact).all()
    assert np.isfinite(truncated).any() and np.nanmax(truncated) <= 1 + 1e-6


def interrupted_then_resumed(protocol, tmp_path, monkeypatch, epoch: int):
    """``(interrupted, resumed)``: a run stopped by Ctrl-C during ``epoch`` (its checkpoint
    written after the epoch before), then resumed from that checkpoint."""
    checkpoint = tmp_path / "run.checkpoint.pt"
    evaluate = Trainer.evaluate

    def interrupt(self, members):
        if self.next_epoch == epoch:
            raise KeyboardInterrupt
        return evaluate(self, members)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "evaluate", interrupt)
        interrupted = train(protocol, checkpoint=checkpoint)
    assert interrupted.status == "interrupted" and len(interrupted.history) == epoch
    return interrupted, train(protocol, checkpoint=checkpoint, resume=True)


def assert_same_networks(a, b):
    for x, y in zip(a.members, b.members, strict=True):
        assert x.history.loss == y.history.loss and x.history.lr == y.history.lr
        for name in History.PER_HEAD:
            np.testing.assert_array_equal(x.history.per_head(name), y.history.per_head(name))
        for name in x.params:
            np.testing.assert_array_equal(x.params[name], y.params[name], err_msg=name)


def test_resume_after_the_plateau_schedule_reduced_the_learning_rate(tmp_path, monkeypatch):
    """The schedules' state (per network: lr, best loss, bad epochs) is in the checkpoint."""
    protocol = load_protocol(SMALL_PARITY, {
        "training.epochs": 6, "training.steps_per_epoch": 3, "training.members": 2,
        "rule.optimizer.schedule": {"kind": "plateau", "patience": 0, "threshold": 0.1,
                                    "factor": 0.5}}, name="small_parity")
    interrupted, resumed = interrupted_then_resumed(protocol, tmp_path, monkeypatch, 4)
    assert all(min(m.history.lr) < 0.003 for m in interrupted.members)  # reduced before
    assert_same_networks(train(protocol), resumed)


def updates_seen(monkeypatch) -> dict[int, list]:
    """Member -> ``(level, inputs, initial state)`` of each of its updates, filled in as
    training runs."""
    seen: dict[int, list] = {}
    update_group = Trainer.update_group

    def spy(self, members, level, batch, initial, score=False):
        for j, i in enumerate(members):
            seen.setdefault(i, []).append((level, batch.inputs[j].copy(),
                                           {k: v[j].copy() for k, v in initial.items()}))
        return update_group(self, members, level, batch, initial, score)

    monkeypatch.setattr(Trainer, "update_group", spy)
    return seen


def same_draw(a, b) -> bool:
    """Whether two ``(level, inputs, initial state)`` are equal."""
    return a[0] == b[0] and a[1].shape == b[1].shape and np.array_equal(a[1], b[1]) and \
        all(np.array_equal(a[2][k], b[2][k]) for k in a[2])


@pytest.mark.parametrize("fixed", [True, False])
def test_fixed_batch_trains_every_update_on_one_batch(monkeypatch, fixed):
    """``training.fixed_batch``: each network's updates all see the same inputs and
    initial states (its own: the members' batches differ); without it every update draws
    a fresh batch."""
    seen = updates_seen(monkeypatch)
    result = train(load_protocol(SMALL_PARITY, {
        "training.epochs": 2, "training.steps_per_epoch": 3, "training.members": 2,
        "training.fixed_batch": fixed}, name="small_parity"))
    assert all(m.history.level == [2, 2] for m in result.members)  # one curriculum level
    for draws in seen.values():
        assert len(draws) == 6
        assert all(same_draw(draws[0], d) for d in draws[1:]) == fixed
        assert not any(same_draw(draws[0], d) for d in draws[1:]) != fixed
    assert not same_draw(seen[0][0], seen[1][0])


def test_fixed_batch_of_a_task_without_curriculum(monkeypatch):
    """A task without N (flip-flop, the TCR code's fixed batch): one batch per network."""
    seen = updates_seen(monkeypatch)
    train(load_protocol(REPO / "protocols" / "flip_flop.yaml", {
        "model.n_units": 8, "training.epochs": 2, "training.steps_per_epoch": 2,
        "training.batch_size": 4, "training.eval_batches": 1, "training.fixed_batch": True,
        "record.trials": 1}))
    (draws,) = seen.values()
    assert len(draws) == 4 and all(same_draw(draws[0], d) for d in draws[1:])


def test_fixed_batch_is_drawn_again_at_each_curriculum_level():
    """A new level gets its own batch, drawn from the network's seed and the level (so
    it does not depend on when the level was reached)."""
    protocol = load_protocol(SMALL_PARITY, {"training.fixed_batch": True},
                             name="small_parity")
    trainer = Trainer([protocol])
    first = trainer.training_draw(0)
    assert trainer.training_draw(0) is first
    trainer.members[0].curriculum.n = 3
    third = trainer.training_draw(0)
    assert third[0] != first[0] and third[0].n_max == 3
    assert trainer.training_draw(0) is third
    other = Trainer([protocol])
    other.members[0].curriculum.n = 3
    again = other.training_draw(0)
    assert same_draw((again[0], again[1].inputs, again[2]), (third[0], third[1].inputs,
                                                             third[2]))


def test_resume_with_a_fixed_batch_gives_the_same_run(tmp_path, monkeypatch):
    protocol = load_protocol(SMALL_PARITY, {"training.epochs": 4, "training.steps_per_epoch": 3,
                                            "training.fixed_batch": True}, name="small_parity")
    _, resumed = interrupted_then_resumed(protocol, tmp_path, monkeypatch, 2)
    assert_same_networks(train(protocol), resumed)


def test_level_up_is_decided_on_eval_batches_x_eval_batch_size_test_trials(monkeypatch):
    """The accuracy the curriculum levels up on is the mean over exactly ``eval_batches``
    test batches of ``eval_batch_size`` trials (the curriculum paper: 50 x 256); so is the
    reliability recorded."""
    scored, decided = [], []
    scores, update = Trainer.scores, Curriculum.update

    def spy_scores(self, members, level, batch, outputs):
        result = scores(self, members, level, batch, outputs)
        scored.append((self.next_epoch, batch.inputs.shape[1], *result[0][1:]))
        return result

    def spy_update(self, accuracy):
        decided.append(accuracy.copy())
        return update(self, accuracy)

    monkeypatch.setattr(Trainer, "scores", spy_scores)
    monkeypatch.setattr(Curriculum, "update", spy_update)
    history = train(load_protocol(
        SMALL_PARITY, {"training.epochs": 2, "training.steps_per_epoch": 2,
                       "training.eval_batches": 3, "training.eval_batch_size": 7},
        name="small_parity")).history
    assert len(decided) == 2
    for epoch, accuracy in enumerate(decided):
        batches = [(trials, a, r) for e, trials, a, r in scored if e == epoch]
        assert [trials for trials, _, _ in batches] == [7, 7, 7]  # 21 test trials
        np.testing.assert_array_equal(accuracy, np.mean([a for _, a, _ in batches], axis=0))
        np.testing.assert_array_equal(history.per_head("reliability")[epoch],
                                      np.mean([r for _, _, r in batches], axis=0))
