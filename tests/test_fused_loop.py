"""The fused time loop (`bioplast.fused_loop`) against the eager loop it replaces.

Reference: the eager loop (`TorchStepper` with ``engine="eager"``), where autograd records
every operation of every step; the fused loop writes the adjoint out from sympy
derivatives. Both must give the same states, recorded values, final states and gradients
(float64, <= 1e-10 relative) for every shipped model and for user models with several
states, a source computed from the state, white noise and exponential Euler, under
truncation, e-prop's detached recurrence, perturbations and ensembles of members.
"""

import numpy as np
import pytest
import torch

import bioplast
from bioplast.compile_torch import TorchStepper

from conftest import LINEAR_MODEL, SHIPPED_MODELS

ADAPTING = """\
name: adapting
description: two states per unit, a recurrent source computed from the state, white noise
equations: |
  dx/dt = (-x + I_rec + I_fb + I_in + b - a + sigma * xi * tau**0.5) / tau : 1
  da/dt = (-a + g * r**2) / tau_a : 1
  r = tanh(x) : 1
  b : 1 (trainable)
  g : 1 (trainable, shared)
  tau : second (constant, shared)
  tau_a : second (constant, shared)
  sigma : 1 (constant, shared)
couplings:
  W_rec: {source: r, target: I_rec, init: {kind: scaled_normal, gain: 1.2}}
  W_fb: {source: a, target: I_fb, init: {kind: scaled_normal, gain: 0.3}}
  W_in: {source: input, target: I_in}
readout: {source: r}
initial: {x: {kind: normal, std: 0.5}, a: {kind: normal, std: 0.1}}
defaults: {n_units: 6, n_inputs: 2, n_outputs: 2, tau: 10 ms, tau_a: 50 ms, sigma: 0.1,
           g: 0.5, dt: 1 ms}
"""

RECTIFIED = """\
name: rectified
description: clip and abs in the update
equations: |
  dv/dt = (-v + clip(I_rec + I_in + b, 0, 2) + 0.1 * abs(v) + 0.1 * int(v > 0.5)) / tau : 1
  b : 1 (trainable)
  tau : second (trainable)
couplings:
  W_rec: {source: v, target: I_rec, init: {kind: scaled_normal, gain: 0.9}}
  W_in: {source: input, target: I_in}
readout: {source: v}
initial: {v: {kind: normal, std: 0.5}}
defaults: {n_units: 5, n_inputs: 2, n_outputs: 1, tau: 10 ms, dt: 1 ms}
"""


def run(model, engine, *, members=2, trials=4, steps=11, seed=3, **options):
    """States, final states and gradients of a loss touching every recorded value."""
    stepper = TorchStepper(model, torch.float64, "cpu", noise=options.pop("noise", True),
                           engine=engine)
    drawn = [model.init_params(s) for s in range(members)]
    params = {k: torch.tensor(np.stack([p[k] for p in drawn]), requires_grad=True)
              for k in model.params}
    rng = np.random.default_rng(seed)
    inputs = torch.tensor(rng.normal(size=(trials, steps, model.n_inputs)))
    initial = {n: torch.tensor(rng.normal(size=(members, trials, model.n_units)) * 0.3)
               for n in model.state_names}
    if options.pop("perturb", False):
        options["perturbations"] = {
            c.target: torch.tensor(rng.normal(size=(members, trials, steps, model.n_units)))
            * 0.1 for c in model.couplings.values()}
    generator = torch.Generator()
    generator.manual_seed(seed)
    names = list(model.recordable)
    recorded, final = stepper.run(stepper.bind(params), inputs, initial, names, generator,
                                  **options)
    weights = torch.linspace(0.5, 1.5, steps, dtype=torch.float64)[:, None]
    loss = sum((i + 1) * (v * weights).pow(2).sum() for i, v in enumerate(recorded.values())
               if v.requires_grad) + sum(v.pow(3).sum() for v in final.values())
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return stepper, recorded, final, dict(zip(params, grads))


def assert_same(eager, fused):
    _, rec_a, fin_a, grad_a = eager
    _, rec_b, fin_b, grad_b = fused
    assert rec_a.keys() == rec_b.keys()
    for name in rec_a:
        np.testing.assert_allclose(rec_b[name].detach(), rec_a[name].detach(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    for name in fin_a:
        np.testing.assert_allclose(fin_b[name].detach(), fin_a[name].detach(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    for name in grad_a:
        if grad_a[name] is None:
            assert grad_b[name] is None or not grad_b[name].any(), name
            continue
        scale = float(grad_a[name].abs().max()) or 1.0
        np.testing.assert_allclose(grad_b[name] / scale, grad_a[name] / scale, rtol=0,
                                   atol=1e-10, err_msg=name)


OPTIONS = [{}, {"truncation": 4}, {"detach_recurrent": True}, {"perturb": True},
           {"noise": False}, {"members": 1}]


@pytest.mark.parametrize("name", SHIPPED_MODELS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_shipped_models_fused_equal_eager(name, options):
    model = bioplast.load_model(name, n_units=7, n_inputs=3)
    fused = run(model, "fused", **options)
    assert fused[0].fused_plan.problem is None  # really fused, not the fallback
    assert_same(run(model, "eager", **options), fused)


@pytest.mark.parametrize("text,method", [(ADAPTING, "euler"), (RECTIFIED, "euler"),
                                         (LINEAR_MODEL, "exponential_euler"),
                                         ("leaky_current", "exponential_euler")],
                         ids=["adapting", "rectified", "linear-exp", "current-exp"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_user_models_fused_equal_eager(text, method, options):
    model = bioplast.load_model(text, method=method)
    fused = run(model, "fused", **options)
    assert fused[0].fused_plan.problem is None
    assert_same(run(model, "eager", **options), fused)


def test_clip_at_its_bounds_has_autograds_half_gradient():
    """At a bound, torch's autograd of clip passes half the gradient; the fused loop's
    derivative does the same (states exactly at the bound: zero weights and inputs)."""
    model = bioplast.load_model(RECTIFIED)
    results = []
    for engine in ("eager", "fused"):
        stepper = TorchStepper(model, torch.float64, engine=engine)
        params = {k: torch.zeros((1, *model.param_shape(k)), dtype=torch.float64,
                                 requires_grad=True) for k in model.params}
        params["tau"].data.fill_(0.01)
        initial = {"v": torch.zeros(1, 2, model.n_units, dtype=torch.float64)}
        recorded, _ = stepper.run(stepper.bind(params), torch.zeros(2, 5, 2,
                                                                    dtype=torch.float64),
                                  initial, ["v"])
        results.append(torch.autograd.grad(recorded["v"].sum(), params["b"])[0])
    assert float(results[0].abs().max()) > 0
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12)


def test_a_model_the_fused_loop_cannot_differentiate_runs_eager():
    """exprel's derivative at 0 is not written out: the plan says why and `run` takes the
    eager loop (same numbers as asking for it)."""
    text = RECTIFIED.replace("0.1 * abs(v)", "0.1 * exprel(v)").replace(
        "description: clip and abs in the update",
        "description: exprel in the update")
    model = bioplast.load_model(text)
    stepper = TorchStepper(model, torch.float64)
    assert "derivative" in stepper.fused_plan.problem
    assert_same(run(model, "eager"), run(model, "fused"))


def test_plans_are_shared_by_models_of_the_same_structure():
    """The sympy work is done once per structure: a model loaded again (other size, same
    equations) reuses the plan; other equations, dtype or noise setting get their own."""
    small, large = (bioplast.load_model("leaky_rate", n_units=n) for n in (5, 50))
    plan = TorchStepper(small, torch.float64).fused_plan
    assert TorchStepper(large, torch.float64).fused_plan is plan
    assert TorchStepper(large, torch.float32).fused_plan is not plan
    assert TorchStepper(large, torch.float64, noise=False).fused_plan is not plan
    assert TorchStepper(bioplast.load_model("leaky_current"), torch.float64).fused_plan \
        is not plan
    # constants that print alike (15 digits) but differ are other structures
    near = [bioplast.load_model(LINEAR_MODEL.replace("-r + I_rec", f"-r + {c}*I_rec"))
            for c in ("0.3", "0.30000000000000004")]
    assert TorchStepper(near[0], torch.float64).fused_plan is not \
        TorchStepper(near[1], torch.float64).fused_plan
