"""torch against Brian2 (numpy, cython, cpp_standalone): same weights, inputs and initial
states, noise off, float64. Reference: the other backend (Brian2's own state updaters)."""

import numpy as np
import pytest

import bioplast
from conftest import SHIPPED_MODELS, random_inputs

TARGETS = ["numpy", "cython", pytest.param("cpp_standalone", marks=pytest.mark.cpp_standalone)]


def max_relative_difference(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.brian2
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_torch_and_brian2_trajectories_agree(model_name, target):
    model = bioplast.load_model(model_name)
    params = model.init_params(seed=1)
    if "b" in params:  # a bias that starts at 0: moved, so that units leave the origin
        params["b"] = np.random.default_rng(2).normal(0, 0.3, size=model.n_units)
    inputs = random_inputs(model, n_trials=8, n_steps=200, seed=3)
    record = list(model.recordable)
    torch_ds = bioplast.simulate(model, params, inputs, "torch", record=record, noise=False)
    brian_ds = bioplast.simulate(model, params, inputs, "brian2", target=target, record=record,
                                 noise=False)
    for name in [*record, "outputs"]:
        assert torch_ds[name].shape == brian_ds[name].shape
        assert max_relative_difference(brian_ds[name].values, torch_ds[name].values) <= 1e-6, name
    # the activity is not trivial: it moves away from its initial state
    state = model.state_names[0]
    assert np.std(torch_ds[state].values[:, -1]) > 1e-3


@pytest.mark.brian2
def test_member_axis_on_brian2_equals_one_by_one():
    model = bioplast.load_model("leaky_current", n_units=12)
    members = [model.init_params(seed) for seed in range(3)]
    stacked = {k: np.stack([p[k] for p in members]) for k in members[0]}
    inputs = random_inputs(model, 4, 50)
    together = bioplast.simulate(model, stacked, inputs, "brian2", noise=False)
    for index, params in enumerate(members):
        alone = bioplast.simulate(model, params, inputs, "brian2", noise=False,
                                  initial_state={"x": together["initial_x"].values[index]})
        np.testing.assert_array_equal(together["x"].values[index], alone["x"].values)
        np.testing.assert_array_equal(together["outputs"].values[index],
                                      alone["outputs"].values)


NOISY_UNIT = """\
name: noisy_unit
equations: |
  dr/dt = (-r + noise) / tau : 1
  noise = sigma * randn() : 1 (constant over dt)
  dv/dt = -v / tau + s * sqrt(2 / tau) * xi : 1
  tau : second (constant, shared)
  sigma : 1 (constant, shared)
  s : 1 (constant, shared)
defaults: {n_units: 50, tau: 10 ms, dt: 2 ms, sigma: 0.5, s: 0.3}
"""


@pytest.mark.brian2
@pytest.mark.parametrize("backend,options", [("torch", {}), ("brian2", {"target": "numpy"})])
def test_noise_has_the_analytic_stationary_variance(backend, options):
    """Reference: the AR(1) process r' = (1-a) r + a sigma eps has stationary variance
    a^2 sigma^2 / (1 - (1-a)^2); Euler-Maruyama of the OU process v has
    2 a s^2 / (1 - (1-a)^2) with a = dt/tau."""
    model = bioplast.load_model(NOISY_UNIT)
    inputs = np.zeros((20, 400, 0))
    ds = bioplast.simulate(model, None, inputs, backend, seed=7, **options)
    a = model.dt / 0.01
    stationary = slice(100, None)  # after 20 time constants
    var_r = ds["r"].values[:, stationary].var()
    var_v = ds["v"].values[:, stationary].var()
    np.testing.assert_allclose(var_r, a**2 * 0.25 / (1 - (1 - a) ** 2), rtol=0.08)
    np.testing.assert_allclose(var_v, 2 * a * 0.09 / (1 - (1 - a) ** 2), rtol=0.08)
    quiet = bioplast.simulate(model, None, inputs, backend, noise=False, **options)
    assert np.all(quiet["r"].values == 0) and np.all(quiet["v"].values == 0)


@pytest.mark.brian2
@pytest.mark.parametrize("model_name", ["leaky_rate", "leaky_current", "ei_rate"])
def test_exponential_euler_agrees_with_brian2(model_name):
    """Brian2's exponential_euler state updater is the reference."""
    model = bioplast.load_model(model_name, n_units=20, method="exponential_euler")
    params = model.init_params(seed=5)
    inputs = random_inputs(model, n_trials=8, n_steps=200, seed=6)
    torch_ds = bioplast.simulate(model, params, inputs, noise=False)
    brian_ds = bioplast.simulate(model, params, inputs, "brian2", noise=False)
    state = model.state_names[0]
    assert max_relative_difference(brian_ds[state].values, torch_ds[state].values) <= 1e-6
    euler = bioplast.simulate(bioplast.load_model(model, method="euler"), params, inputs,
                              noise=False)
    assert not np.allclose(euler[state].values, torch_ds[state].values)  # a different method
