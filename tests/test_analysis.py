"""Analyses against references: Ornstein-Uhlenbeck processes with known timescales, the
analytic timescale of an uncoupled leaky unit, the fixed point and Jacobian of a linear
network, the period of a Hopf oscillator, a line attractor, and rotations for similarity."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group

import bioplast
from bioplast import cli
from bioplast.analysis.analyze import analyze
from bioplast.analysis.dynamics import classify_mechanism, extended_run, find_fixed_points
from bioplast.analysis.geometry import geometry
from bioplast.analysis.similarity import compare, linear_cka, procrustes_distance
from bioplast.analysis.timescales import timescales
from conftest import LINEAR_MODEL

DT = 1e-3


def ornstein_uhlenbeck(taus, steps=20000, trials=4, seed=0):
    """Exact discretization: x_t = a x_{t-1} + sqrt(1 - a^2) noise, a = exp(-dt/tau)."""
    rng = np.random.default_rng(seed)
    taus = np.asarray(taus)
    a = np.exp(-DT / taus)
    x = np.zeros((trials, steps, taus.size))
    for t in range(1, steps):
        x[:, t] = a * x[:, t - 1] + np.sqrt(1 - a ** 2) * rng.normal(size=(trials, taus.size))
    return x


def as_recording(values, **coords):
    return xr.DataArray(values, dims=("trial", "time", "unit"),
                        coords={"time": ("time", np.arange(values.shape[1]) * DT,
                                         {"units": "second"}), **coords})


def test_single_timescales_of_ornstein_uhlenbeck_traces():
    taus = np.array([2, 5, 10, 15]) * 1e-3
    result = timescales(as_recording(ornstein_uhlenbeck(taus)))
    assert list(result["fit_model"].values) == ["single"] * 4
    np.testing.assert_allclose(result["tau"].values, taus, rtol=0.1)
    assert result["tau"].attrs["units"] == "second"


def test_two_timescale_mixture_is_recognized():
    fast, slow = ornstein_uhlenbeck([2e-3] * 4, seed=1), ornstein_uhlenbeck([20e-3] * 4, seed=2)
    result = timescales(as_recording(np.sqrt(0.5) * fast + np.sqrt(0.5) * slow), max_lag=60)
    assert list(result["fit_model"].values) == ["double"] * 4
    assert np.mean(result["tau_fast"].values) == pytest.approx(2e-3, rel=0.1)
    assert np.mean(result["tau_slow"].values) == pytest.approx(20e-3, rel=0.1)
    assert np.mean(result["weight_fast"].values) == pytest.approx(0.5, abs=0.1)
    np.testing.assert_allclose(result["tau"], result["tau_slow"])  # tau_net: the slower


LEAKY_PARITY = """\
name: tau
seed: 0
model: {file: leaky_tau, n_units: 16}
task: {name: n_parity, n: 2, curriculum: none, max_n: 2}
rule: {name: bptt, optimizer: {name: adam, lr: 0.02}}
training: {epochs: 2, steps_per_epoch: 10, batch_size: 16, eval_batches: 1}
record: {trials: 2}
"""


def test_trained_leaky_tau_units_have_their_analytic_timescale(tmp_path):
    """An uncoupled leaky_tau unit is r_t = (1 - 1/tau) r_{t-1} + phi(input)/tau with
    i.i.d. input: its autocorrelation is (1 - 1/tau)^lag, a timescale of
    -dt / ln(1 - 1/tau)."""
    path = tmp_path / "p.yaml"
    path.write_text(LEAKY_PARITY)
    out = tmp_path / "trained.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    ds = xr.load_dataset(out)
    ds["W_rec"][:] = 0.0  # uncoupled units
    tau = ds["tau"].values
    assert np.ptp(tau) > 0.5  # trained taus differ from unit to unit
    result = analyze(ds, do_dynamics=False, do_geometry=False, steps=20000, trials=4,
                     max_lag=40)
    memory = tau > 1.2  # near tau = 1 a unit has (almost) no memory
    expected = -DT / np.log(1 - 1 / tau[memory])
    assert memory.sum() >= 8
    np.testing.assert_allclose(result["tau"].values[memory], expected, rtol=0.1)
    assert np.all(result["tau"].values[~memory] < DT)  # under one step


def test_linear_network_fixed_point_and_eigenvalues():
    """Reference: x* = (I - W)^-1 (U u + b); the Euler map's Jacobian I + dt/tau (W - I)."""
    model = bioplast.load_model(LINEAR_MODEL, n_units=5)
    params = model.init_params(0)
    params["b"] = np.linspace(-1, 1, 5)
    u = np.array([0.3, -0.2])
    points = find_fixed_points(model, params, np.random.default_rng(0).normal(size=(12, 5)),
                               inputs=u)
    assert points.sizes["point"] == 1 and points["kind"].values[0] == "fixed"
    expected = np.linalg.solve(np.eye(5) - params["W_rec"], params["W_in"] @ u + params["b"])
    np.testing.assert_allclose(points["point_r"].values[0], expected, atol=1e-7)
    jacobian = np.eye(5) + model.dt / params["tau"] * (params["W_rec"] - np.eye(5))
    found = points["eigenvalue_real"].values[0] + 1j * points["eigenvalue_imag"].values[0]
    np.testing.assert_allclose(np.sort_complex(found), np.sort_complex(np.linalg.eigvals(jacobian)),
                               atol=1e-10)
    assert points["stable"].values[0] == int(np.max(np.abs(np.linalg.eigvals(jacobian))) < 1)


HOPF = """\
name: hopf
description: Hopf normal form per unit, a limit cycle of radius sqrt(mu) and angular frequency omega/tau
equations: |
  dx/dt = (mu * x - omega * y - (x**2 + y**2) * x + I_in) / tau : 1
  dy/dt = (omega * x + mu * y - (x**2 + y**2) * y) / tau : 1
  mu : 1 (constant, shared)
  omega : 1 (constant, shared)
  tau : second (constant, shared)
couplings:
  W_in: {source: input, target: I_in, init: {kind: constant, value: 1}}
readout: {source: x}
initial: {x: 0.1}
defaults: {n_units: 1, n_inputs: 1, n_outputs: 1, mu: 1, omega: 2.5, tau: 10 ms, dt: 0.1 ms}
"""


def test_hopf_oscillator_is_a_limit_cycle_with_its_period(write_model):
    model = bioplast.load_model(write_model(HOPF))
    params = model.init_params(0)
    inputs = np.zeros((2, 400, 1))
    inputs[:, :50, 0] = np.array([1.0, -1.0])[:, None]
    run = extended_run(model, params, inputs, None, variable="states")
    result = classify_mechanism(run, trial_steps=400)
    assert list(result["mechanism"].values) == ["limit_cycle"] * 2
    period = 2 * np.pi * 0.01 / 2.5  # tau * 2 pi / omega
    np.testing.assert_allclose(result["period"].values, period, rtol=0.05)


def test_line_attractor_is_a_slow_point_manifold():
    model = bioplast.load_model(LINEAR_MODEL, n_units=6)
    params = model.init_params(0)
    direction = np.random.default_rng(1).normal(size=6)
    direction /= np.linalg.norm(direction)
    params["W_rec"] = np.outer(direction, direction)  # eigenvalue 1 along direction
    params["b"] = np.zeros(6)
    params["W_in"] = np.zeros((6, 2))
    params["W_in"][:, 0] = direction
    inputs = np.zeros((4, 40, 2))
    inputs[:, :5, 0] = np.array([1.0, -1.0, 0.5, 2.0])[:, None]
    run = extended_run(model, params, inputs, {"r": np.zeros((4, 6))})
    result = classify_mechanism(run)
    assert list(result["mechanism"].values) == ["slow_point_manifold"] * 4
    assert np.all(np.isnan(result["period"].values))
    points = find_fixed_points(model, params, run.values[:, -1])
    assert set(points["kind"].values) == {"fixed"}
    np.testing.assert_allclose(points["max_abs_eigenvalue"].values, 1.0, atol=1e-9)


def test_geometry_of_low_dimensional_activity():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(3, 300, 2)) * [2.0, 1.0]
    values = latent @ np.linalg.qr(rng.normal(size=(10, 2)))[0].T
    result = geometry(values + 1e-3 * rng.normal(size=values.shape))
    assert int(result["n_components_90"]) == 2
    # two components with variances 4 and 1: PR = 25 / 17
    assert float(result["participation_ratio"]) == pytest.approx(25 / 17, rel=0.05)


def similar_recordings(seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    conditions = np.repeat(np.arange(6), 10)
    latent = rng.normal(size=(6, 30, 5))
    trials = latent[conditions] + 0.05 * rng.normal(size=(60, 30, 5))
    model = trials @ rng.normal(size=(5, 12))
    recording = model @ ortho_group.rvs(12, random_state=seed + 1) \
        + noise * rng.normal(size=model.shape)
    time = ("time", np.arange(30) * 0.01, {"units": "second"})

    def dataset(values, labels):
        return xr.Dataset({"rates": (("trial", "time", "unit"), values),
                           "condition": ("trial", labels)}, coords={"time": time})
    return dataset(model, conditions), dataset(recording, conditions), rng


def test_rotated_activity_is_similar_and_shuffled_conditions_are_not():
    model, recording, rng = similar_recordings()
    result = compare(model, recording, shuffles=50)
    assert float(result.sel(metric="procrustes")["value"]) < 0.01
    assert float(result.sel(metric="cca")["value"]) < 0.01
    assert float(result.sel(metric="cka")["value"]) > 0.999
    assert float(result.sel(metric="rsa")["value"]) > 0.9
    assert np.all(result["p_value"].values < 0.05)
    assert float(result.sel(metric="procrustes")["cross_validated"]) < 0.1
    shuffled = recording.copy()
    shuffled["condition"] = ("trial", rng.permutation(shuffled["condition"].values))
    far = compare(model, shuffled, shuffles=10)
    assert float(far.sel(metric="procrustes")["value"]) > 0.5
    assert float(far.sel(metric="cka")["value"]) < 0.5


def test_conditions_are_matched_by_label_not_position():
    model, recording, _ = similar_recordings()
    order = np.argsort(recording["condition"].values)[::-1]
    reordered = recording.isel(trial=order)
    a = compare(model, recording, shuffles=0)["value"].values
    b = compare(model, reordered, shuffles=0)["value"].values
    np.testing.assert_allclose(a, b, atol=1e-12)


matrices = st.integers(min_value=0, max_value=10_000).map(
    lambda seed: np.random.default_rng(seed).normal(size=(20, 4)))


@settings(max_examples=30, deadline=None)
@given(matrices, matrices, matrices)
def test_procrustes_distance_is_a_metric(x, y, z):
    assert procrustes_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert procrustes_distance(x, y) == pytest.approx(procrustes_distance(y, x), abs=1e-12)
    assert procrustes_distance(x, z) <= procrustes_distance(x, y) + procrustes_distance(y, z) \
        + 1e-9
    rotation = ortho_group.rvs(4, random_state=0)
    assert procrustes_distance(x, 3.0 * x @ rotation) == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(matrices, matrices)
def test_cka_is_symmetric_bounded_and_one_on_itself(x, y):
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x))
    assert 0.0 <= linear_cka(x, y) <= 1.0 + 1e-12


def write_recording(path, values, **variables):
    dataset = xr.Dataset({"spikes_per_second": (("trial", "time", "unit"), values),
                          **variables},
                         coords={"time": ("time", np.arange(values.shape[1]) * DT,
                                          {"units": "second"})})
    dataset.to_netcdf(path)
    return path


def test_analyze_and_compare_a_plain_recording(tmp_path, capsys):
    traces = ornstein_uhlenbeck([3e-3, 6e-3, 9e-3], steps=4000, trials=6)
    labels = np.array([0, 1, 0, 1, 0, 1])
    recording = write_recording(tmp_path / "recording.nc", traces,
                                condition=("trial", labels))
    out = tmp_path / "analysis.nc"
    assert cli.main(["analyze", str(recording), "-o", str(out), "--quiet"]) == 0
    result = xr.load_dataset(out)
    np.testing.assert_allclose(result["tau"].values, [3e-3, 6e-3, 9e-3], rtol=0.15)
    assert "participation_ratio" in result and "mechanism" in result
    assert cli.main(["plot", str(out), "-o", str(tmp_path / "a.png")]) == 0
    other = write_recording(tmp_path / "other.nc", traces @ ortho_group.rvs(3, random_state=2),
                            condition=("trial", labels))
    assert cli.main(["compare", str(recording), str(other), "--metric", "procrustes",
                     "--shuffles", "5", "-o", str(tmp_path / "c.nc")]) == 0
    assert "procrustes" in capsys.readouterr().out
    assert float(xr.load_dataset(tmp_path / "c.nc")["value"].sel(metric="procrustes")) < 1e-6


@pytest.mark.parametrize("dataset,words", [
    (xr.Dataset({"rates": (("trial", "unit"), np.zeros((2, 3)))}),
     "no variable with dims (trial, time, unit)"),
    (xr.Dataset({"rates": (("trial", "sample", "unit"), np.zeros((2, 5, 3)))}),
     "no variable with dims (trial, time, unit)"),
    (xr.Dataset({"rates": (("trial", "time", "unit"), np.zeros((2, 5, 3)))},
                coords={"time": [0.0, 0.1, 0.3, 0.4, 0.5]}), "not evenly spaced"),
])
def test_recordings_that_do_not_fit_get_a_clear_error(tmp_path, capsys, dataset, words):
    path = tmp_path / "bad.nc"
    dataset.to_netcdf(path)
    code = cli.main(["analyze", str(path), "-o", str(tmp_path / "o.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and words in err and str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_compare_needs_condition_labels(tmp_path, capsys):
    traces = np.random.default_rng(0).normal(size=(4, 20, 3))
    a = write_recording(tmp_path / "a.nc", traces)
    b = write_recording(tmp_path / "b.nc", traces, condition=("trial", [0, 1, 0, 1]))
    assert cli.main(["compare", str(a), str(b)]) == 2
    assert "no condition labels along 'trial'" in capsys.readouterr().err


def test_analyze_a_training_result(tmp_path):
    out = tmp_path / "q.nc"
    assert cli.main(["run", "protocols/quickstart.yaml", "--set", "training.epochs=3", "-o",
                     str(out), "--quiet"]) == 0
    analysis = tmp_path / "a.nc"
    assert cli.main(["analyze", str(out), "--steps", "2000", "--trials", "3", "-o",
                     str(analysis), "--quiet"]) == 0
    result = xr.load_dataset(analysis)
    for name in ("tau", "network_tau", "point_r", "eigenvalue_real", "mechanism",
                 "participation_ratio", "projections"):
        assert name in result
    assert result.attrs["source_kind"] == "training" and result.attrs["variable"] == "r"
    assert cli.main(["plot", str(analysis), "-o", str(tmp_path / "a.png")]) == 0


def test_a_training_result_is_driven_with_its_tasks_statistics(tmp_path, monkeypatch):
    """``--drive task`` (and ``auto``, for a result trained on a task): N-parity bits with
    one rate p ~ U(0, 1) per trial, as the curriculum paper drives its networks; ``bits``:
    rate 1/2 in every trial. The task is the one the protocol attr describes."""
    from bioplast import results, simulation
    from bioplast.errors import InputError
    from bioplast.protocol import load_protocol
    path = tmp_path / "p.yaml"
    path.write_text(LEAKY_PARITY)
    out = tmp_path / "trained.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    ds = xr.load_dataset(out)
    task = results.stored_task(ds, results.stored_model(ds, "x"), "x")
    assert task.name == "n_parity" and task.config == load_protocol(path).task.config
    driven = {}
    simulate = simulation.simulate

    def spy(model, params, inputs, **options):
        driven[drive] = inputs
        return simulate(model, params, inputs, **options)
    monkeypatch.setattr(simulation, "simulate", spy)
    for drive in ("auto", "task", "bits"):
        analyze(ds, do_dynamics=False, do_geometry=False, steps=400, burn_in=0, trials=60,
                drive=drive)
    np.testing.assert_array_equal(driven["auto"], driven["task"])
    rates = {drive: inputs[..., 0].mean(axis=1) for drive, inputs in driven.items()}
    assert rates["task"].std() > 0.2 and np.abs(rates["bits"] - 0.5).max() < 0.15
    without = ds.copy()
    del without.attrs["protocol"]  # e.g. a simulation result: no task to draw from
    with pytest.raises(InputError, match="needs a training result"):
        analyze(without, do_dynamics=False, do_geometry=False, steps=400, drive="task")
    analysis = tmp_path / "a.nc"
    assert cli.main(["analyze", str(out), "--timescales", "--drive", "task", "--steps", "400",
                     "--max-lag", "10", "-o", str(analysis), "--quiet"]) == 0
    assert "tau" in xr.load_dataset(analysis)
