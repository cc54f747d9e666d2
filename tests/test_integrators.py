"""Integrators against analytic solutions.

Reference: the exact solution of the linear network tau dr/dt = -r + W r + U u + b with
constant input, r(t) = expm(M t) [r0; 1] for the augmented matrix M = [[A, c], [0, 0]],
A = (W - I)/tau, c = (U u + b)/tau (scipy.linalg.expm).
"""

import numpy as np
import pytest
from scipy.linalg import expm

import bioplast


def exact_final_state(model, params, r0, u, duration):
    n = model.n_units
    A = (params["W_rec"] - np.eye(n)) / params["tau"]
    c = (params["W_in"] @ u + params["b"]) / params["tau"]
    augmented = np.zeros((n + 1, n + 1))
    augmented[:n, :n], augmented[:n, n] = A, c
    return (expm(augmented * duration) @ np.append(r0, 1.0))[:n]


def final_state_error(model, params, r0, u, n_steps):
    inputs = np.broadcast_to(u, (1, n_steps, model.n_inputs))
    ds = bioplast.simulate(model, params, inputs, initial_state={"r": r0[None]})
    simulated = ds["r"].values[0, -1]
    exact = exact_final_state(model, params, r0, u, n_steps * model.dt)
    return np.max(np.abs(simulated - exact)) / np.max(np.abs(exact))


def convergence(model_text, method):
    duration, errors, steps = 0.05, [], []
    for dt_ms in (1.0, 0.5, 0.25, 0.125, 0.0625):
        model = bioplast.load_model(model_text, dt=f"{dt_ms} ms", method=method)
        params = model.init_params(seed=3)
        params["b"] = np.random.default_rng(4).normal(size=model.n_units)
        r0 = np.random.default_rng(5).normal(size=model.n_units)
        u = np.array([0.7, -0.4])
        n_steps = int(round(duration / model.dt))
        errors.append(final_state_error(model, params, r0, u, n_steps))
        steps.append(model.dt)
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    return np.array(errors), slope


def test_euler_converges_to_expm_with_order_one():
    from conftest import LINEAR_MODEL
    errors, slope = convergence(LINEAR_MODEL, "euler")
    assert errors[-1] < 5e-3, errors
    assert np.all(np.diff(errors) < 0), errors
    assert 0.9 <= slope <= 1.1, (slope, errors)


def test_exponential_euler_converges_with_order_one_when_coupled():
    from conftest import LINEAR_MODEL
    errors, slope = convergence(LINEAR_MODEL, "exponential_euler")
    assert errors[-1] < 5e-3, errors
    assert 0.9 <= slope <= 1.1, (slope, errors)


@pytest.mark.parametrize("dt", ["0.1 ms", "2 ms", "7 ms"])
def test_exponential_euler_is_exact_for_uncoupled_units(linear_model, dt):
    """With W_rec = 0 each unit is tau dr/dt = -r + c: exponential Euler is exact."""
    model = bioplast.load_model(linear_model, dt=dt, method="exponential_euler")
    params = model.init_params(seed=0)
    params["W_rec"] = np.zeros_like(params["W_rec"])
    params["b"] = np.linspace(-1, 1, model.n_units)
    r0 = np.random.default_rng(1).normal(size=model.n_units)
    assert final_state_error(model, params, r0, np.array([0.3, 0.2]), 37) < 1e-12


def test_euler_is_the_discrete_update_of_the_papers(linear_model):
    """Euler of tau dr/dt = -r + f with alpha = dt/tau is r' = (1 - alpha) r + alpha f."""
    model = bioplast.load_model("leaky_rate", n_units=5, n_inputs=2)
    params = model.init_params(seed=2)
    inputs = np.random.default_rng(0).normal(size=(3, 20, 2))
    r0 = np.random.default_rng(1).normal(size=(3, 5))
    ds = bioplast.simulate(model, params, inputs, initial_state={"r": r0}, noise=False)
    alpha = model.dt / params["tau"]
    r, expected = r0, []
    for t in range(20):
        drive = np.tanh(r @ params["W_rec"].T + inputs[:, t] @ params["W_in"].T + params["b"])
        r = (1 - alpha) * r + alpha * drive
        expected.append(r)
    np.testing.assert_allclose(ds["r"].values, np.stack(expected, axis=1), rtol=1e-12,
                               atol=1e-14)
    outputs = np.stack(expected, axis=1) @ params["W_out"].T + params["b_out"]
    np.testing.assert_allclose(ds["outputs"].values, outputs, rtol=1e-12, atol=1e-14)
