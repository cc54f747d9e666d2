"""The member axis: E networks simulated as one batched model equal the same networks
simulated one by one (reference: the unbatched torch loop)."""

import numpy as np
import pytest
import torch

import bioplast
from conftest import SHIPPED_MODELS, random_inputs


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_batched_members_equal_one_by_one(model_name):
    model = bioplast.load_model(model_name, n_units=16)
    members = [model.init_params(seed) for seed in range(4)]
    stacked = {k: np.stack([p[k] for p in members]) for k in members[0]}
    inputs = random_inputs(model, 5, 60)
    together = bioplast.simulate(model, stacked, inputs, noise=False)
    assert together["outputs"].dims == ("member", "trial", "time", "output")
    for index, params in enumerate(members):
        initial = {s: together[f"initial_{s}"].values[index] for s in model.state_names}
        alone = bioplast.simulate(model, params, inputs, noise=False, initial_state=initial)
        for name in [*model.state_names, "outputs"]:
            np.testing.assert_allclose(together[name].values[index], alone[name].values,
                                       rtol=1e-13, atol=1e-14)


def test_members_can_have_their_own_inputs():
    model = bioplast.load_model("leaky_rate", n_units=8)
    stacked = {k: np.stack([v, v]) for k, v in model.init_params(0).items()}
    inputs = np.stack([random_inputs(model, 3, 20, seed=0), random_inputs(model, 3, 20, seed=1)])
    ds = bioplast.simulate(model, stacked, inputs, noise=False)
    alone = bioplast.simulate(model, model.init_params(0), inputs[1], noise=False,
                              initial_state={"r": ds["initial_r"].values[1]})
    np.testing.assert_allclose(ds["r"].values[1], alone["r"].values, rtol=1e-13, atol=1e-14)


def test_float32_tracks_float64():
    model = bioplast.load_model("leaky_current", n_units=20)
    inputs = random_inputs(model, 4, 100)
    double = bioplast.simulate(model, None, inputs, dtype="float64", noise=False)
    single = bioplast.simulate(model, None, inputs, dtype="float32", noise=False)
    np.testing.assert_allclose(single["x"].values, double["x"].values, rtol=1e-3, atol=1e-4)


def test_noise_is_reproducible_from_the_seed():
    model = bioplast.load_model("leaky_current", n_units=10, sigma=0.5)
    inputs = random_inputs(model, 3, 40)
    first = bioplast.simulate(model, None, inputs, seed=11)
    again = bioplast.simulate(model, None, inputs, seed=11)
    other = bioplast.simulate(model, None, inputs, seed=12)
    np.testing.assert_array_equal(first["x"].values, again["x"].values)
    assert not np.allclose(first["x"].values, other["x"].values)


def test_gradients_flow_through_simulate_backend():
    """The backend keeps autograd graphs of tensors that require grad."""
    from bioplast.backends import get_backend
    model = bioplast.load_model("leaky_rate", n_units=6)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.init_params(0).items()}
    trajectory = get_backend("torch").simulate(
        model, params, torch.zeros(2, 10, model.n_inputs), model.initial_state(2, 0, 1),
        ["r"], noise=False)
    trajectory.outputs.sum().backward()
    assert params["W_rec"].grad is not None and params["W_rec"].grad.abs().sum() > 0
