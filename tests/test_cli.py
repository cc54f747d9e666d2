"""The command line end to end, as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioplast import cli, registry
from bioplast.model_files import list_models


def bioplast(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "bioplast", *map(str, args)],
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


@pytest.mark.brian2
def test_simulate_info_plot_on_both_backends(tmp_path):
    torch_file, brian_file = tmp_path / "t.nc", tmp_path / "b.nc"
    bioplast("simulate", "leaky_current", "--set", "n_units=12", "--trials", 3, "--steps", 40,
             "--no-noise", "-o", torch_file)
    bioplast("simulate", "models/leaky_current.yaml", "--set", "n_units=12", "--backend",
             "brian2", "--trials", 3, "--steps", 40, "--no-noise", "-o", brian_file)
    t, b = xr.load_dataset(torch_file), xr.load_dataset(brian_file)
    assert t["x"].shape == (3, 40, 12)
    np.testing.assert_allclose(b["x"].values, t["x"].values, rtol=1e-9, atol=1e-12)
    assert t.attrs["backend"] == "torch" and b.attrs["backend"] == "brian2"
    info = bioplast("info", torch_file).stdout
    assert "leaky_current" in info and "W_rec" in info and "(trial, time, unit)" in info
    figure = tmp_path / "fig.png"
    bioplast("plot", torch_file, brian_file, "-o", figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_result_file_re_simulates_identically(tmp_path):
    first, second = tmp_path / "first.nc", tmp_path / "second.nc"
    assert cli.main(["simulate", "leaky_tau", "--set", "n_units=7", "--set", "sigma=0.1",
                     "--trials", "2", "--steps", "25", "--seed", "5", "-o", str(first),
                     "--quiet"]) == 0
    assert cli.main(["simulate", str(first), "-o", str(second), "--quiet"]) == 0
    a, b = xr.load_dataset(first), xr.load_dataset(second)
    np.testing.assert_array_equal(a["r"].values, b["r"].values)  # same seed, same noise
    np.testing.assert_array_equal(a["tau"].values, b["tau"].values)


def test_inputs_from_npy_and_netcdf(tmp_path):
    inputs = np.random.default_rng(0).normal(size=(2, 9, 2))
    np.save(tmp_path / "u.npy", inputs)
    out = tmp_path / "a.nc"
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=5", "--inputs",
                     str(tmp_path / "u.npy"), "-o", str(out), "--quiet"]) == 0
    ds = xr.load_dataset(out)
    np.testing.assert_array_equal(ds["inputs"].values, inputs)
    again = tmp_path / "b.nc"
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=5", "--inputs", str(out),
                     "-o", str(again), "--quiet"]) == 0
    np.testing.assert_array_equal(xr.load_dataset(again)["r"].values, ds["r"].values)


def test_bad_inputs_file_is_a_clear_error(tmp_path, capsys):
    np.save(tmp_path / "u.npy", np.zeros((2, 9, 3)))
    code = cli.main(["simulate", "leaky_rate", "--inputs", str(tmp_path / "u.npy"), "-o",
                     str(tmp_path / "x.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "u.npy" in err and "n_inputs = 2" in err
    assert not (tmp_path / "x.nc").exists()


def test_list():
    out = bioplast("list").stdout
    for name in ("leaky_rate", "leaky_current", "leaky_tau", "ei_rate", "torch", "brian2",
                 "cpp_standalone", "differentiable"):
        assert name in out


def test_bad_model_from_the_console_has_no_traceback(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nequations: |\n  dr/dt = -r/tau + q : 1\n  tau : second\n"
                    "defaults: {n_units: 2, dt: 1 ms, tau: 5 ms}\n")
    result = bioplast("simulate", path, "-o", tmp_path / "o.nc", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"bioplast: error: {path}:3: equations: unknown variable "
                                     "'q' in the equation of 'r' (declare it, e.g. 'q : 1', "
                                     "or fix the name)")


@pytest.mark.brian2
@pytest.mark.cpp_standalone
def test_a_failing_brian2_build_exits_1_with_a_message(tmp_path, monkeypatch, capsys):
    """No compiler: the run fails (exit 1) with one message, not a traceback."""
    import brian2
    monkeypatch.setenv("BIOPLAST_CACHE_DIR", str(tmp_path / "cache"))
    key = "devices.cpp_standalone.extra_make_args_unix"
    before = list(brian2.prefs[key])
    brian2.prefs[key] = [*before, "CXX=/nonexistent/compiler"]
    from bioplast.backends.brian2 import Brian2Backend
    Brian2Backend._standalone.update(key=None, network=None, directory=None)
    try:
        code = cli.main(["simulate", "leaky_rate", "--set", "n_units=3", "--backend", "brian2",
                         "--target", "cpp_standalone", "--steps", "4", "-o",
                         str(tmp_path / "o.nc"), "--quiet"])
    finally:
        brian2.prefs[key] = before
    err = capsys.readouterr().err
    assert code == 1
    # make and the compiler speak on stderr too; bioplast adds one line at the end
    assert err.strip().splitlines()[-1].startswith("bioplast: failed: brian2 (cpp_standalone) failed")
    assert "Traceback" not in err and not (tmp_path / "o.nc").exists()


def test_re_simulation_takes_new_values_and_keeps_noise_off(tmp_path):
    first, second = tmp_path / "first.nc", tmp_path / "second.nc"
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=6", "--set", "sigma=0.5",
                     "--trials", "3", "--steps", "10", "--no-noise", "-o", str(first),
                     "--quiet"]) == 0
    assert cli.main(["simulate", str(first), "--set", "tau=20 ms", "-o", str(second),
                     "--quiet"]) == 0
    a, b = xr.load_dataset(first), xr.load_dataset(second)
    assert float(b["tau"]) == 0.02 and int(b.attrs["noise"]) == 0
    np.testing.assert_array_equal(a["W_rec"].values, b["W_rec"].values)
    assert cli.main(["simulate", str(first), "--trials", "2", "-o", str(second),
                     "--quiet"]) == 0
    assert xr.load_dataset(second)["r"].shape == (2, 200, 6)


@pytest.mark.parametrize("argv,words", [
    (["--input-std", "-1"], "must be >= 0"),
    (["--seed", "-1"], "must be >= 0"),
    (["--trials", "0"], "must be > 0"),
])
def test_bad_numbers_on_the_command_line(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        cli.main(["simulate", "leaky_rate", "-o", str(tmp_path / "o.nc"), *argv])
    assert info.value.code == 2 and words in capsys.readouterr().err


def test_output_that_is_a_directory_or_an_unknown_figure_format(tmp_path, capsys):
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=3", "--steps", "3", "-o",
                     str(tmp_path), "--quiet"]) == 2
    assert "is a directory" in capsys.readouterr().err
    out = tmp_path / "o.nc"
    assert cli.main(["simulate", "leaky_rate", "--set", "n_units=3", "--steps", "3", "-o",
                     str(out), "--quiet"]) == 0
    assert cli.main(["plot", str(out), "-o", str(tmp_path / "f.xyz")]) == 2
    assert "cannot write '.xyz' figures" in capsys.readouterr().err


def test_a_diverging_simulation_exits_1_and_says_so(tmp_path, capsys):
    out = tmp_path / "o.nc"
    code = cli.main(["simulate", "leaky_current", "--set", "n_units=4", "--set", "tau=0.2 ms",
                     "--steps", "3000", "--input-std", "10", "-o", str(out), "--quiet"])
    assert code == 1 and "diverged" in capsys.readouterr().err
    assert xr.load_dataset(out).attrs["status"] == "diverged"


def test_plot_results_with_and_without_a_curriculum_in_one_figure(tmp_path):
    """The curriculum axis is made for the first result that has levels, whichever it is
    (it used to be made only for the first result: a NameError for the second)."""
    plain, levels = tmp_path / "plain.nc", tmp_path / "levels.nc"
    small = ["--set", "training.epochs=2", "--set", "training.steps_per_epoch=2",
             "--set", "model.n_units=8", "--quiet"]
    assert cli.main(["run", "protocols/quickstart.yaml", "-o", str(plain), *small]) == 0
    assert cli.main(["run", "protocols/nparity_multi_head.yaml", "-o", str(levels), *small,
                     "--set", "task.max_n=3", "--set", "training.target_accuracy=null",
                     "--set", "task.threshold=0.01", "--set", "training.batch_size=8"]) == 0
    assert len(np.unique(xr.load_dataset(levels)["level"].values)) > 1
    figure = tmp_path / "both.png"
    assert cli.main(["plot", str(plain), str(levels), "-o", str(figure), "--quiet"]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_loads_neither_torch_nor_brian2():
    """`import bioplast` is lazy (PEP 562): the command line answers --help without the
    heavy libraries (6 s of imports before)."""
    code = ("import sys, contextlib, io\n"
            "from bioplast import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        cli.main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted({'torch', 'brian2', 'xarray', 'sympy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


#: libraries that `bioplast --help`, `list` and `info` must not load (seconds of imports)
HEAVY = ("brian2", "matplotlib", "sympy", "torch", "xarray")


def light_run(*argv, cwd=None) -> tuple[int, str, list[str]]:
    """``bioplast ARGV`` in a fresh interpreter: its exit code, its stdout, and which of
    the `HEAVY` libraries it loaded."""
    code = ("import contextlib, io, json, sys\n"
            "from bioplast import cli\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    code = cli.main(sys.argv[1:])\n"
            f"print(json.dumps([code, out.getvalue(), sorted(set({HEAVY!r}) & "
            "set(sys.modules))]))")
    result = subprocess.run([sys.executable, "-c", code, *map(str, argv)], cwd=cwd,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    code, out, heavy = json.loads(result.stdout)
    return code, out, heavy


@pytest.mark.parametrize("what", [[], ["rules", "models"], ["backends", "tasks",
                                                             "regularizers"]])
def test_list_loads_neither_torch_nor_brian2_and_says_what_the_classes_say(what, capsys,
                                                                            monkeypatch):
    """`bioplast list` reads descriptions and options from the source (0.6 s, was 6 s),
    and prints what importing every class prints."""
    code, light, heavy = light_run("list", *what)
    assert code == 0 and heavy == []
    monkeypatch.setattr(registry, "source_summary", lambda target: None)
    assert cli.main(["list", *what]) == 0
    assert light == capsys.readouterr().out
    assert all(f"{category}:\n" in light for category in what)


def test_listed_models_and_backends_are_what_loading_them_gives(tmp_path):
    from bioplast.backends import spec
    from bioplast.model import load_model
    from bioplast.model_files import describe_model
    for name in list_models():
        assert describe_model(name) == load_model(name).description
    for name in registry.BACKENDS.names():
        backend = registry.BACKENDS.get(name)
        capabilities, choices = cli._backend_offer(name)
        assert capabilities == [c.replace("_", " ") for c in ("differentiable",
                                                              "supports_members")
                                if getattr(backend, c)]
        assert choices == dict(backend.option_choices)
        assert name in spec.OPTIONS  # read without importing the backend
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.yaml").write_text("name: [\n")
    code, out, heavy = light_run("list", "models", cwd=tmp_path)
    assert code == 0 and heavy == []
    line = next(line for line in out.splitlines() if "broken" in line)
    assert "(invalid: " in line and "broken.yaml:2: malformed YAML" in line


TINY_PROTOCOL = """\
name: tiny
seed: 0
model: {file: leaky_rate, n_units: 8, readout.activation: sigmoid}
task: {name: delayed_cue, cue: 30 ms, delay: 150 ms, response: 50 ms}
rule: {name: bptt, optimizer: {name: adam, lr: 0.003}}
training: {epochs: 1, steps_per_epoch: 2, batch_size: 8, eval_batches: 1}
backend: {name: torch, dtype: float32}
record: {trials: 8}
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """One result of each kind, made by the command line (~15 s)."""
    directory = tmp_path_factory.mktemp("results")
    protocol = directory / "p.yaml"
    protocol.write_text(TINY_PROTOCOL)
    runs = {"simulation": ["simulate", "ei_rate", "--trials", "2", "--steps", "5",
                           "--no-noise"],
            "training": ["run", protocol],
            "ensemble": ["run", protocol, "--set", "training.members=2"],
            "sweep": ["sweep", protocol, "--grid", "seed=0,1", "--workers", "1"],
            "analysis": ["analyze", directory / "training.nc", "--geometry"]}
    for kind, argv in runs.items():
        assert cli.main([*map(str, argv), "-o", str(directory / f"{kind}.nc"),
                         "--quiet"]) == 0, kind
    return {kind: directory / f"{kind}.nc" for kind in runs}


@pytest.mark.parametrize("kind", ["simulation", "training", "ensemble", "sweep", "analysis"])
def test_info_loads_neither_torch_nor_brian2_and_says_what_xarray_reads(results, kind):
    """`bioplast info` reads the header with netCDF4 (0.5 s, was 4 s) and prints what it
    printed from the file opened with xarray."""
    path = str(results[kind])
    code, out, heavy = light_run("info", path)
    assert code == 0 and heavy == []
    with xr.open_dataset(path) as dataset:
        assert out == "".join(f"{line}\n" for line in cli.info_lines(dataset, path))
    assert out.startswith(f"{path}: {'training' if kind == 'ensemble' else kind}")
