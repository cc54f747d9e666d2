"""The gated models (models/gru.yaml, models/lstm.yaml) against hand-written references:
torch.nn.GRUCell / nn.LSTMCell with the same weights (float64, 1e-12), the Brian2 backend,
autograd with the recurrent path detached (e-prop, as for every equation-defined model), and
a short BPTT run of the multi-head N-parity curriculum."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import bioplast
from bioplast import cli
from bioplast.compile_torch import TorchStepper
from bioplast.model_files import list_models
from bioplast.online import plan_derivatives
from bioplast.protocol import load_protocol
from bioplast.results import training_dataset
from bioplast.rules import RULES, TrainingContext, true_gradient
from bioplast.tasks import TASKS
from bioplast.training import train
from conftest import MODELS_DIR, random_inputs

TOLERANCE = 1e-12
#: torch's gate order in weight_ih / weight_hh / bias_ih / bias_hh, as bioplast's suffixes
GATES = {"gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}
STATES = {"gru": ("h",), "lstm": ("h", "c")}


def torch_cell(name, params):
    """nn.GRUCell / nn.LSTMCell holding bioplast's parameters: W_x* stacked into weight_ih,
    W_h* into weight_hh, b_x* into bias_ih, b_h* into bias_hh, in torch's gate order."""
    n_units, n_inputs = params[f"W_x{GATES[name][0]}"].shape
    cell = (nn.GRUCell if name == "gru" else nn.LSTMCell)(n_inputs, n_units,
                                                           dtype=torch.float64)
    stacked = {"weight_ih": "W_x", "weight_hh": "W_h", "bias_ih": "b_x", "bias_hh": "b_h"}
    with torch.no_grad():
        for attribute, prefix in stacked.items():
            getattr(cell, attribute).copy_(torch.as_tensor(
                np.concatenate([params[prefix + gate] for gate in GATES[name]])))
    return cell


def run_cell(name, cell, inputs, initial):
    """States (trial, time, unit) of the cell stepped over ``inputs`` (trial, time, input)."""
    h = torch.as_tensor(initial["h"])
    c = torch.as_tensor(initial["c"]) if name == "lstm" else None
    states = {s: [] for s in STATES[name]}
    with torch.no_grad():
        for step in torch.as_tensor(inputs).unbind(dim=1):
            if name == "gru":
                h = cell(step, h)
            else:
                h, c = cell(step, (h, c))
            states["h"].append(h)
            if name == "lstm":
                states["c"].append(c)
    return {s: torch.stack(values, dim=1).numpy() for s, values in states.items()}


def small(name, **overrides):
    return bioplast.load_model(name, **{"n_units": 7, "n_inputs": 3, "n_outputs": 4,
                                        **overrides})


def initial_states(model, seed):
    """Initial states away from zero (the models start at 0; any value must work)."""
    rng = np.random.default_rng(seed)
    return {s: rng.uniform(-0.8, 0.8, size=(5, model.n_units)) for s in model.state_names}


@pytest.mark.parametrize("name", ["gru", "lstm"])
@pytest.mark.parametrize("n_steps", [1, 20])
def test_each_step_is_torchs_cell(name, n_steps):
    """States after every step equal torch.nn.GRUCell's / nn.LSTMCell's with the same
    weights, from nonzero initial states, with gates away from saturation and from 1/2."""
    model = small(name)
    params = model.init_params(seed=1)
    for key in params:  # larger weights than the init: gates far from their init values
        if key[:2] in ("W_", "b_") and key not in ("W_out", "b_out"):
            params[key] = 3 * params[key]
    inputs = random_inputs(model, n_trials=5, n_steps=n_steps, seed=2)
    initial = initial_states(model, seed=3)
    ds = bioplast.simulate(model, params, inputs, "torch", initial_state=initial, noise=False,
                           seed=4, dtype="float64")
    theirs = run_cell(name, torch_cell(name, params), inputs, initial)
    for state in STATES[name]:
        assert ds[state].dims[:2] == ("trial", "time")
        np.testing.assert_allclose(ds[state].values, theirs[state], rtol=0, atol=TOLERANCE,
                                   err_msg=state)
    assert np.std(theirs["h"][:, -1]) > 0.05  # the activity moves
    outputs = theirs["h"] @ params["W_out"].T + params["b_out"]
    np.testing.assert_allclose(ds["outputs"].values, outputs, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_initialisation_is_torchs(name):
    """Every weight and bias U(+-1/sqrt(hidden_size)) as the cells' reset_parameters (the
    input weights too, whose fan-in is n_inputs), filling the range; the readout
    nn.Linear's; states start at 0."""
    model = bioplast.load_model(name, n_units=400, n_inputs=2)
    params = model.init_params(seed=0)
    bound = 1 / math.sqrt(400)
    for key, value in params.items():
        if key in ("W_out", "b_out"):
            continue
        assert np.max(np.abs(value)) <= bound, key
        assert np.max(np.abs(value)) > 0.95 * bound, key
    assert np.max(np.abs(params["W_out"])) <= bound
    initial = model.initial_state(3, seed=0)
    assert all(np.all(initial[s] == 0) for s in STATES[name])


@pytest.mark.brian2
@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_backends_agree(name):
    model = small(name)
    params = model.init_params(seed=1)
    inputs = random_inputs(model, n_trials=3, n_steps=15, seed=1)
    initial = initial_states(model, seed=3)
    initial = {s: v[:3] for s, v in initial.items()}
    torch_ds = bioplast.simulate(model, params, inputs, "torch", initial_state=initial, noise=False,
                                 seed=5, dtype="float64")
    brian_ds = bioplast.simulate(model, params, inputs, "brian2", initial_state=initial,
                                 target="numpy", noise=False, seed=5)
    for state in STATES[name]:
        np.testing.assert_allclose(torch_ds[state].values, brian_ds[state].values,
                                   rtol=1e-6, atol=1e-12, err_msg=state)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_eprop_equals_autograd_with_the_recurrent_path_detached(name):
    """e-prop derives its traces from the equations (several states for the LSTM, as in
    Bellec et al. 2020's LSTM traces); symmetric e-prop equals autograd with the recurrent
    couplings' path detached, and differs from BPTT."""
    task_class = TASKS.get("flip_flop")
    model = small(name)
    task = task_class(task_class.Config(n_bits=2, duration="15 ms", flip_probability=0.2),
                      model.dt)
    model = bioplast.load_model(model, n_inputs=task.n_inputs, n_outputs=task.n_outputs)
    params = {k: torch.as_tensor(v[None]) for k, v in model.init_params(0).items()}
    stepper = TorchStepper(model, torch.float64, "cpu", noise=False)
    leaves = (*model.state_names, *(c.target for c in model.couplings.values()),
              *(p for p in model.equations.parameter_names if p in model.params))
    assert stepper.fused_plan.problem is None  # every local derivative from sympy forms
    assert plan_derivatives(stepper.fused_plan, leaves).uncovered == []
    context = TrainingContext(model, task, stepper, torch.Generator().manual_seed(0), [])
    batch = task.sample(4, np.random.default_rng(2))
    initial = model.initial_state(4, seed=3)
    level = task.initial_level()
    eprop = RULES.get("eprop")(RULES.get("eprop").Config())
    with torch.no_grad():
        ours = eprop.estimate(context, params, batch, initial, level,
                              eprop.init_state(context, params))[0]
    _, detached = true_gradient(context, params, batch, initial, level, detach_recurrent=True)
    _, bptt = true_gradient(context, params, batch, initial, level)
    assert set(ours) == set(detached) == set(params)
    for key in ours:
        scale = float(detached[key].abs().max())
        assert scale > 0, key
        np.testing.assert_allclose(ours[key].numpy(), detached[key].numpy(), rtol=1e-8,
                                   atol=1e-8 * scale, err_msg=key)
    recurrent = "W_hr" if name == "gru" else "W_hi"
    assert not np.allclose(ours[recurrent].numpy(), bptt[recurrent].numpy())


GATE_NAMES = {"gru": ("r", "z", "n"),
              "lstm": ("input_gate", "forget_gate", "candidate", "output_gate")}


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_bptt_trains_on_the_multi_head_parity_curriculum_and_is_analysed(name, tmp_path,
                                                                       capsys):
    """A few epochs of the paper's curriculum protocol with model.file overridden: the
    network passes N = 2 (98% accuracy on the test batches: the curriculum advances), the
    result holds states and gates, and `bioplast analyze` finds timescales and fixed points
    of every state."""
    protocol = load_protocol(MODELS_DIR.parent / "protocols" / "nparity_multi_head.yaml", {
        "model.file": name, "model.n_units": 32, "training.epochs": 6,
        "training.steps_per_epoch": 30, "training.batch_size": 32,
        "training.eval_batches": 2, "task.max_n": 5,
        "rule.optimizer": {"name": "adam", "lr": 0.01}, "record.trials": 3})
    before = protocol.model.init_params(protocol.seed)
    result = train(protocol)
    assert max(result.history.level) > result.history.level[0]
    for key in ("W_hn" if name == "gru" else "W_hf", "W_out"):
        assert not np.array_equal(result.params[key], before[key]), key
    ds = training_dataset(result)
    for variable in (*STATES[name], *GATE_NAMES[name]):
        assert variable in ds and np.all(np.isfinite(ds[variable].values)), variable
    path, analysis_path = tmp_path / "run.nc", tmp_path / "analysis.nc"
    bioplast.save(ds, path)
    assert cli.main(["analyze", str(path), "-o", str(analysis_path), "--quiet"]) == 0, \
        capsys.readouterr().err
    analysis = bioplast.load(analysis_path)
    assert np.all(np.isfinite(analysis["tau"].values)) and np.all(analysis["tau"].values > 0)
    for state in STATES[name]:
        assert f"point_{state}" in analysis, state


def test_the_gated_models_are_listed():
    assert {"gru", "lstm"} <= set(list_models())
    assert (MODELS_DIR / "gru.yaml").exists() and (MODELS_DIR / "lstm.yaml").exists()
