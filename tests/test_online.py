"""The torch backend's online loop (`bioplast.online`): the derivatives it takes from the
fused plan's sympy forms equal autograd's, and it steps as the forward pass does."""

import numpy as np
import pytest
import torch

import bioplast
from bioplast.compile_torch import TorchStepper
from bioplast.online import plan_derivatives
from conftest import SHIPPED_MODELS, random_inputs


def network(name, seed=0):
    """A shipped model of 5 units with noise on, its parameters (two members, biases moved
    off zero) and initial states."""
    model = bioplast.load_model(name, n_units=5)
    params = {k: torch.as_tensor(np.stack([v, v])) for k, v in model.init_params(seed).items()}
    rng = np.random.default_rng(seed + 1)
    for bias in {"b", "b_in", "b_rec"} & set(params):
        params[bias] = params[bias] + torch.as_tensor(rng.normal(0, 0.3, params[bias].shape))
    if "sigma" in params:
        params["sigma"] = torch.full_like(params["sigma"], 0.2)
    initial = {k: torch.as_tensor(np.stack([v, v]))
               for k, v in model.initial_state(3, seed=seed + 2).items()}
    return model, params, initial


def steps(model, params, initial, engine, parameters):
    stepper = TorchStepper(model, torch.float64, "cpu", noise=True, engine=engine)
    inputs = torch.as_tensor(random_inputs(model, 3, 6))
    return list(stepper.online_steps(stepper.bind(params), inputs, initial,
                                     torch.Generator().manual_seed(4), parameters))


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_plan_derivatives_equal_autograds(name):
    """For every shipped model the online loop takes every local derivative (states,
    coupling targets, every unit parameter) from the plan, and they equal autograd's
    (`local_derivatives` of `TorchStepper.local_update`, the eager engine's) to 1e-12."""
    model, params, initial = network(name)
    parameters = tuple(n for n in model.equations.parameter_names if n in model.params)
    stepper = TorchStepper(model, torch.float64, "cpu", noise=True)
    leaves = (*model.state_names, *(c.target for c in model.couplings.values()), *parameters)
    assert stepper.fused_plan.problem is None
    assert plan_derivatives(stepper.fused_plan, leaves).uncovered == []
    plan = steps(model, params, initial, "fused", parameters)
    reference = steps(model, params, initial, "eager", parameters)
    for ours, theirs in zip(plan, reference):
        for s in model.state_names:
            torch.testing.assert_close(ours.new_states[s], theirs.new_states[s], rtol=0, atol=0)
            assert set(ours.derivatives[s]) == set(theirs.derivatives[s]) == set(leaves)
            for leaf in leaves:
                torch.testing.assert_close(ours.derivatives[s][leaf].expand_as(
                    theirs.derivatives[s][leaf]), theirs.derivatives[s][leaf],
                    rtol=1e-12, atol=1e-12, msg=f"d {s} / d {leaf}")


def test_online_steps_follow_the_forward_pass():
    """The states the online loop steps through are the forward pass's (same random
    numbers), and a parameter changed between steps is used from the next step on."""
    model, params, initial = network("leaky_rate")
    stepper = TorchStepper(model, torch.float64, "cpu", noise=True)
    inputs = torch.as_tensor(random_inputs(model, 3, 6))
    recorded, _ = stepper.run(stepper.bind(params), inputs, initial, ["r"],
                              torch.Generator().manual_seed(4))
    online = steps(model, params, initial, "fused", ())
    torch.testing.assert_close(torch.stack([s.new_states["r"] for s in online], dim=2),
                               recorded["r"], rtol=1e-12, atol=1e-12)
    changed = {k: v.clone() for k, v in params.items()}
    loop = stepper.online_steps(stepper.bind(changed), inputs, initial,
                                torch.Generator().manual_seed(4))
    first = next(loop)
    changed["W_rec"].mul_(2.0)
    second = next(loop)
    torch.testing.assert_close(first.new_states["r"], online[0].new_states["r"])
    torch.testing.assert_close(second.targets["I_rec"],
                               2.0 * online[1].targets["I_rec"], rtol=1e-12, atol=1e-12)
