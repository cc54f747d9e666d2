"""`bioplast analyze` and `bioplast compare` on odd, damaged and out-of-range input: NaN
activity is dropped (and said so) or an InputError naming the file and variable; arguments out
of range name their flag; sweeps and ensembles ask for --select; never a traceback or a
printed RuntimeWarning. End to end through `bioplast.cli.main`, in-process."""

import numpy as np
import pytest
import xarray as xr

from bioplast import cli

FORBIDDEN = ("Traceback", "LinAlgError", "RuntimeWarning", "internal error")
FAST = ["--steps", "200", "--trials", "2", "--max-lag", "10"]


def call(capfd, *argv):
    code = cli.main([str(arg) for arg in argv])
    out, err = capfd.readouterr()
    for word in FORBIDDEN:
        assert word not in out + err, out + err
    return code, out, err


def error(capfd, *argv) -> str:
    """Run a command that must fail with an InputError: its single stderr line (--quiet:
    no progress line before it)."""
    code, _, err = call(capfd, *argv, "--quiet")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("bioplast: error: "), err
    return lines[0]


def recording(path, values, labels=None, dt=1e-3):
    coords = {"time": ("time", np.arange(values.shape[1]) * dt, {"units": "second"})}
    if labels is not None:
        coords["condition"] = ("trial", np.asarray(labels))
    xr.Dataset({"rates": (("trial", "time", "unit"), values)}, coords=coords).to_netcdf(path)
    return path


def smooth_noise(trials, steps, units, seed=0):
    """Activity with a few-step timescale (an AR(1) process), so that fits converge fast."""
    rng = np.random.default_rng(seed)
    x = np.zeros((trials, steps, units))
    for t in range(1, steps):
        x[:, t] = 0.8 * x[:, t - 1] + rng.normal(size=(trials, units))
    return x


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A simulation result, a (tiny) training result and a recording with conditions."""
    folder = tmp_path_factory.mktemp("edges")
    simulation, training = folder / "sim.nc", folder / "train.nc"
    assert cli.main(["simulate", "leaky_current", "--set", "n_units=8", "--trials", "4",
                     "--steps", "40", "-o", str(simulation), "--quiet"]) == 0
    assert cli.main(["run", "protocols/quickstart.yaml", "--set", "training.epochs=1",
                     "--set", "training.steps_per_epoch=1", "--set", "model.n_units=8",
                     "--set", "training.batch_size=8", "-o", str(training), "--quiet"]) == 0
    labels = np.array([0, 1, 2] * 4)
    rec = recording(folder / "rec.nc", smooth_noise(12, 60, 3), labels)
    return {"sim": simulation, "train": training, "rec": rec, "dir": folder}


def edited(files, name, source, edit):
    """A copy of ``files[source]`` changed by ``edit(dataset) -> dataset``."""
    dataset = edit(xr.load_dataset(files[source]))
    path = files["dir"] / name
    dataset.to_netcdf(path)
    return path


# ------------------------------------------------------------------ NaN activity
def test_a_nan_trial_is_dropped_with_the_same_numbers_as_without_it(files, capfd, tmp_path):
    values = smooth_noise(12, 60, 3, seed=1)
    labels = np.array([0, 1, 2] * 4)
    with_nan = values.copy()
    with_nan[4, 10, 1] = np.nan
    with_nan[4, 11, 2] = np.inf
    nan_file = recording(tmp_path / "nan.nc", with_nan, labels)
    kept = np.delete(np.arange(12), 4)
    clean_file = recording(tmp_path / "clean.nc", values[kept], labels[kept])
    results = []
    for path in (nan_file, clean_file):
        out = tmp_path / f"a_{path.stem}.nc"
        assert call(capfd, "analyze", path, "-o", out, "--max-lag", "10", "--quiet")[0] == 0
        results.append(xr.load_dataset(out))
    dropped, clean = results
    note = dropped.attrs["dropped"]
    assert str(nan_file) in note and "rates" in note and "trial 4" in note
    assert "1 NaN and 1 inf" in note and "11 trials remain" in note
    assert "dropped" not in clean.attrs
    for name in ("tau", "autocorrelation", "network_tau", "explained_variance",
                 "participation_ratio", "projections", "mechanism_ratio", "period"):
        np.testing.assert_allclose(dropped[name].values, clean[name].values, equal_nan=True)
    assert list(dropped["trial"].values) == list(kept)  # the file's trial numbers

    # compare: the recording with a NaN trial scores as the recording without it
    reference = recording(tmp_path / "ref.nc", smooth_noise(12, 60, 4, seed=2), labels)
    scores = []
    for path in (nan_file, clean_file):
        out = tmp_path / f"c_{path.stem}.nc"
        code, printed, _ = call(capfd, "compare", reference, path, "--shuffles", "5",
                                "-o", out, "--quiet")
        assert code == 0 and "procrustes" in printed
        scores.append(xr.load_dataset(out))
    assert "trial 4" in scores[0].attrs["dropped"] and "dropped" not in scores[1].attrs
    for name in ("value", "cross_validated", "shuffled_mean", "p_value"):
        np.testing.assert_allclose(scores[0][name].values, scores[1][name].values)


def test_nan_activity_of_a_result_is_dropped_for_geometry_and_dynamics(files, capfd,
                                                                        tmp_path):
    def damage(ds):
        ds["r"][2, 3, 1] = np.nan
        ds["inputs"][5, 0, 0] = np.nan
        return ds
    path = edited(files, "nan_train.nc", "train", damage)
    out = tmp_path / "a.nc"
    assert call(capfd, "analyze", path, "--geometry", "--dynamics", "-o", out,
                "--quiet")[0] == 0
    result = xr.load_dataset(out)
    note = result.attrs["dropped"]
    assert "r: 1 NaN sample in 1 of 8 trials (trial 2)" in note and "inputs" in note
    assert result.sizes["trial"] == 7 and 5 not in result["mechanism_trial"].values
    assert call(capfd, "compare", path, files["train"], "--shuffles", "3")[0] == 0


@pytest.mark.parametrize("command", ["analyze", "compare"])
def test_nan_in_every_trial_names_the_file_and_variable(files, capfd, command):
    def damage(ds):
        ds["rates"][:, 7, 0] = np.nan
        return ds
    path = edited(files, "all_nan.nc", "rec", damage)
    argv = ["analyze", path, "-o", files["dir"] / "x.nc"] if command == "analyze" else \
        ["compare", files["rec"], path]
    line = error(capfd, *argv)
    assert f"{path}: rates: every trial holds NaN or inf (12 NaN samples in 12 of 12 " \
           "trials" in line


def test_a_diverged_result_names_the_parameter(files, capfd):
    def diverge(ds):
        ds["W_rec"][0, :3] = np.nan
        return ds
    path = edited(files, "diverged.nc", "train", diverge)
    line = error(capfd, "analyze", path, "--dynamics", "-o", files["dir"] / "x.nc")
    assert f"{path}: W_rec: holds 3 NaN or inf" in line
    # the recorded activity alone is still fine
    assert call(capfd, "analyze", path, "--geometry", "-o", files["dir"] / "g.nc",
                "--quiet")[0] == 0


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("source,extra,flag", [
    ("rec", ["--max-lag", "60"], "--max-lag"),
    ("sim", ["--timescales", "--max-lag", "300", "--steps", "200"], "--max-lag"),
    ("sim", ["--timescales", "--steps", str(10**12)], "--steps"),
    ("sim", ["--timescales", "--trials", str(10**12)], "--trials"),
    ("sim", ["--timescales", "--burn-in", str(10**12)], "--burn-in"),
])
def test_analyze_arguments_out_of_range_name_the_flag(files, capfd, source, extra, flag):
    line = error(capfd, "analyze", files[source], "-o", files["dir"] / "x.nc", *extra)
    assert f"{files[source]}: {flag}: " in line


@pytest.mark.parametrize("extra,flag,words", [
    (["--folds", "5"], "--folds", "has 4 in"),
    (["--shuffles", str(10**9)], "--shuffles", "more than"),
])
def test_compare_arguments_out_of_range_name_the_flag(files, capfd, extra, flag, words):
    line = error(capfd, "compare", files["rec"], files["rec"], *extra)
    assert f" {flag}: " in line and words in line


# ------------------------------------------------------------------ several networks
def test_a_sweep_needs_select(files, capfd, tmp_path):
    one = xr.load_dataset(files["sim"])
    rows = [xr.concat([one, one], dim="seed") for _ in range(2)]
    sweep = xr.concat(rows, dim="lr").assign_coords(
        lr=("lr", [0.01, 0.1], {"key": "rule.optimizer.lr"}),
        seed=("seed", [0, 1], {"key": "seed"}))
    sweep.attrs["kind"] = "sweep"
    path = tmp_path / "sweep.nc"
    sweep.to_netcdf(path)
    for argv in (["analyze", path, "-o", tmp_path / "x.nc"], ["compare", path, files["rec"]]):
        line = error(capfd, *argv)
        assert f"{path}: " in line and "holds 4 networks along (lr, seed)" in line
        assert "--select lr=0.01 --select seed=0" in line
    assert call(capfd, "analyze", path, "--geometry", "--select", "lr=0.01", "--select",
                "seed=0", "-o", tmp_path / "g.nc", "--quiet")[0] == 0


# ------------------------------------------------------------------ odd files
@pytest.mark.parametrize("dataset,words", [
    (xr.Dataset({"rates": (("trial", "unit"), np.ones((2, 3)))}), "no variable with dims"),
    (xr.Dataset({"rates": (("trial", "time", "unit"), np.ones((0, 5, 3)))}),
     "rates: is empty (trial=0)"),
    (xr.Dataset({"rates": (("trial", "time", "unit"), np.ones((2, 1, 3)))}),
     "single time point"),
    (xr.Dataset({"rates": (("trial", "time", "unit"),
                           np.array(["a"] * 30).reshape(2, 5, 3))}), "rates: holds text"),
])
def test_odd_recordings_are_input_errors(capfd, tmp_path, dataset, words):
    path = tmp_path / "odd.nc"
    dataset.to_netcdf(path)
    line = error(capfd, "analyze", path, "-o", tmp_path / "x.nc")
    assert str(path) in line and words in line


def test_complex_activity_is_an_input_error(capfd, tmp_path):
    path = tmp_path / "complex.nc"
    values = smooth_noise(4, 20, 3) * (1 + 1j)
    xr.Dataset({"rates": (("trial", "time", "unit"), values)}).to_netcdf(path,
                                                                          auto_complex=True)
    assert "rates: holds complex numbers" in error(capfd, "analyze", path, "-o",
                                                     tmp_path / "x.nc")


def test_constant_integer_and_single_unit_recordings(files, capfd, tmp_path):
    labels = [0, 1] * 3
    constant = recording(tmp_path / "constant.nc", np.ones((6, 40, 3)), labels)
    code, _, _ = call(capfd, "analyze", constant, "-o", tmp_path / "a.nc", "--max-lag", "5",
                      "--quiet")
    assert code == 0
    assert np.isnan(xr.load_dataset(tmp_path / "a.nc")["participation_ratio"])
    line = error(capfd, "compare", files["rec"], constant)
    assert f"{constant}: rates: is constant" in line

    integer = recording(tmp_path / "integer.nc",
                        (10 * smooth_noise(6, 40, 3)).astype(np.int32), labels)
    assert call(capfd, "analyze", integer, "-o", tmp_path / "i.nc", "--max-lag", "5",
                "--quiet")[0] == 0

    single = recording(tmp_path / "single.nc", smooth_noise(6, 40, 1), labels)
    assert call(capfd, "analyze", single, "-o", tmp_path / "s.nc", "--max-lag", "5",
                "--quiet")[0] == 0
    other = recording(tmp_path / "other.nc", smooth_noise(6, 40, 3, seed=3), labels)
    line = error(capfd, "compare", other, single)
    assert f"{single}: --metric: rsa needs at least 2 units" in line
    assert call(capfd, "compare", other, single, "--metric", "cka", "--metric", "cca",
                "--shuffles", "3")[0] == 0


def test_conditions_that_do_not_match(files, capfd, tmp_path):
    other = recording(tmp_path / "other.nc", smooth_noise(12, 60, 3), ["x", "y", "z"] * 4)
    line = error(capfd, "compare", files["rec"], other)
    assert str(other) in line and "fewer than two condition labels in common" in line
