"""Autograd through the torch step against central finite differences (float64).

Reference: (L(p + h e_i) - L(p - h e_i)) / 2h for every element of every parameter array.
"""

import numpy as np
import pytest
import torch

import bioplast
from bioplast.backends import get_backend
from conftest import random_inputs


def scalar_loss(model, params, inputs, initial_state, target):
    trajectory = get_backend("torch").simulate(model, params, inputs, initial_state,
                                               record=[], noise=False)
    return torch.mean((trajectory.outputs[0] - target) ** 2)


# (model, argument of its piecewise-linear function or None, seed of the biases): finite
# differences are only valid where no perturbation moves that argument across its kink at 0.
CASES = [("leaky_tau", "a", 3), ("leaky_rate", None, 1), ("leaky_current", None, 1),
         ("ei_rate", "x", 3)]


@pytest.mark.parametrize("model_name,kink_argument,bias_seed", CASES)
def test_autograd_matches_central_finite_differences(model_name, kink_argument, bias_seed):
    model = bioplast.load_model(model_name, n_units=5)
    numpy_params = model.init_params(seed=0)
    numpy_params["b"] = np.random.default_rng(bias_seed).normal(0, 0.5, size=model.n_units)
    inputs = torch.as_tensor(random_inputs(model, 3, 25, seed=2))
    initial = {name: torch.as_tensor(value[None]) for name, value in
               model.initial_state(3, seed=3).items()}
    if kink_argument is not None:
        ds = bioplast.simulate(model, numpy_params, inputs.numpy(), noise=False,
                               initial_state={k: v[0].numpy() for k, v in initial.items()},
                               record=[kink_argument])
        assert np.min(np.abs(ds[kink_argument].values)) > 1e-3  # >> every step h below
    target = torch.as_tensor(np.random.default_rng(4).normal(size=(3, 25, model.n_outputs)))
    params = {k: torch.tensor(v, requires_grad=True) for k, v in numpy_params.items()}
    scalar_loss(model, params, inputs, initial, target).backward()
    checked = []
    for name, value in numpy_params.items():
        if name == "sigma":  # the noise amplitude has no effect with noise off
            continue
        numeric = np.zeros(value.shape)
        h = 1e-5 * max(float(np.mean(np.abs(value))), 1e-3)  # step on the array's scale
        for index in np.ndindex(value.shape):
            if model.params[name].zero_diagonal and index[0] == index[1]:
                continue  # no autapses: the diagonal is fixed at 0, not a direction to vary
            losses = []
            for sign in (1, -1):
                shifted = {k: torch.as_tensor(v.copy()) for k, v in numpy_params.items()}
                shifted[name][index] += sign * h
                losses.append(float(scalar_loss(model, shifted, inputs, initial, target)))
            numeric[index] = (losses[0] - losses[1]) / (2 * h)
        analytic = params[name].grad.numpy().copy()
        if model.params[name].zero_diagonal:
            np.fill_diagonal(analytic, 0.0)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5,
                                   atol=1e-9 * max(np.max(np.abs(numeric)), 1e-12),
                                   err_msg=f"{model_name}: {name}")
        checked.append(name)
    for required in ("W_rec", "W_in", "tau", "b", "W_out", "b_out"):
        assert required in checked
