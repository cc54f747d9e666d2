"""Biases drawn as torch's ``nn.Linear`` draws them: ``{kind: uniform_fan_in, coupling: W}``
on a per-unit parameter gives U(+-1/sqrt(fan_in)) with the fan-in of the matrix ``W``
(n_inputs for a coupling from the input, n_units for a recurrent one or the readout)."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

import bioplast
from bioplast import cli
from conftest import random_inputs
from test_model_errors import assert_clear_error

# The delayed-cue paper's network (Kurtkaya, Dinc et al. 2025; fatihdinc/dynamical-phases-stm,
# src/rnn.py): W_in, W_rec and W_out are nn.Linear layers with a bias each.
TWO_BIASES = """\
name: two_biases
equations: |
  dr/dt = (-r + tanh(I_rec + I_in + b_in + b_rec)) / tau : 1
  b_in : 1 (trainable)
  b_rec : 1 (trainable)
  tau : second (constant, shared)
couplings:
  W_rec: {source: r, target: I_rec, autapses: false}
  W_in: {source: input, target: I_in}
readout: {source: r, bias_init: {kind: uniform_fan_in, coupling: W_out}}
parameters:
  b_in: {init: {kind: uniform_fan_in, coupling: W_in}}
  b_rec: {init: {kind: uniform_fan_in, coupling: W_rec}}
defaults: {n_units: 500, n_inputs: 4, n_outputs: 2, tau: 10 ms, dt: 1 ms}
"""


def assert_fills_bound(values, bound):
    """All of ``values`` within +-bound, and the largest close to it (not a narrower law)."""
    assert np.max(np.abs(values)) <= bound
    assert np.max(np.abs(values)) > 0.9 * bound


@pytest.mark.parametrize("n_inputs", [1, 4])
def test_each_bias_takes_the_fan_in_of_its_coupling(n_inputs):
    model = bioplast.load_model(TWO_BIASES, n_inputs=n_inputs)
    params = model.init_params(0)
    assert model.params["b_in"].trainable and model.params["b_rec"].trainable
    assert_fills_bound(params["b_in"], 1 / math.sqrt(n_inputs))  # 1 input: U(-1, 1)
    assert_fills_bound(params["b_rec"], 1 / math.sqrt(500))
    many_outputs = bioplast.load_model(model, n_outputs=200)  # readout: nn.Linear(500, 200)
    assert_fills_bound(many_outputs.init_params(0)["b_out"], 1 / math.sqrt(500))
    assert scipy.stats.kstest(params["b_rec"], scipy.stats.uniform(
        -1 / math.sqrt(500), 2 / math.sqrt(500)).cdf).pvalue > 1e-3


def test_the_bound_is_torchs_nn_linear_bias_bound():
    """torch documents nn.Linear's bias as U(-1/sqrt(in_features), +1/sqrt(in_features))."""
    torch.manual_seed(0)
    fan_in, n_units = 25, 4000
    torch_bias = torch.nn.Linear(fan_in, n_units).bias.detach().numpy()
    assert_fills_bound(torch_bias, 1 / math.sqrt(fan_in))
    model = bioplast.load_model(TWO_BIASES, n_inputs=fan_in, n_units=n_units)
    ours = model.init_params(0)["b_in"]
    assert_fills_bound(ours, 1 / math.sqrt(fan_in))
    assert scipy.stats.ks_2samp(ours, torch_bias).pvalue > 1e-3


def test_gain_scales_and_seeds_reproduce():
    model = bioplast.load_model(TWO_BIASES, **{"parameters.b_in.init": {
        "kind": "uniform_fan_in", "coupling": "W_in", "gain": 0.5}})
    params = model.init_params(3)
    assert_fills_bound(params["b_in"], 0.5 / math.sqrt(4))
    np.testing.assert_array_equal(model.init_params(3)["b_in"], params["b_in"])
    assert not np.array_equal(model.init_params(4)["b_in"], params["b_in"])


def test_the_named_coupling_is_part_of_the_model():
    model = bioplast.load_model(TWO_BIASES)
    swapped = bioplast.load_model(TWO_BIASES, **{"parameters.b_in.init": {
        "kind": "uniform_fan_in", "coupling": "W_rec"}})
    assert model != swapped
    assert_fills_bound(swapped.init_params(0)["b_in"], 1 / math.sqrt(500))


def test_per_population_values_may_name_a_coupling():
    text = TWO_BIASES.replace(
        "  b_in: {init: {kind: uniform_fan_in, coupling: W_in}}",
        "  b_in: {init: {E: {kind: uniform_fan_in, coupling: W_in}, I: 0}}") \
        + "populations: {E: 0.8, I: 0.2}\n"
    b_in = bioplast.load_model(text).init_params(0)["b_in"]
    assert_fills_bound(b_in[:400], 1 / math.sqrt(4))
    assert np.all(b_in[400:] == 0)


@pytest.mark.brian2
def test_both_backends_simulate_the_same_drawn_biases():
    model = bioplast.load_model(TWO_BIASES, n_units=12)
    inputs = random_inputs(model, n_trials=3, n_steps=20, seed=1)
    torch_ds = bioplast.simulate(model, inputs=inputs, backend="torch", noise=False, seed=5)
    brian_ds = bioplast.simulate(model, inputs=inputs, backend="brian2", target="numpy",
                                 noise=False, seed=5)
    for name in ("b_in", "b_rec", "b_out"):
        np.testing.assert_array_equal(torch_ds[name].values, brian_ds[name].values)
        np.testing.assert_array_equal(torch_ds[name].values, model.init_params(5)[name])
    np.testing.assert_allclose(torch_ds["r"].values, brian_ds["r"].values, rtol=1e-6,
                               atol=1e-12)


B_IN = "  b_in: {init: {kind: uniform_fan_in, coupling: W_in}}"


@pytest.mark.parametrize("old,new,key,words", [
    (B_IN, B_IN.replace("W_in", "W_xx"), "parameters.b_in.init",
     ["unknown coupling 'W_xx'", "(couplings: W_rec, W_in, W_out)"]),
    (B_IN, "  b_in: {init: uniform_fan_in}", "parameters.b_in.init",
     ["coupling: NAME", "(couplings: W_rec, W_in, W_out)"]),
    ("autapses: false}", "autapses: false, init: {kind: uniform_fan_in, coupling: W_xx}}",
     "couplings.W_rec.init", ["unknown coupling 'W_xx'", "(couplings: W_rec, W_in, W_out)"]),
    (B_IN, "  b_in: {init: {kind: uniform, low: 0, high: 1, coupling: W_in}}",
     "parameters.b_in.init", ["takes no argument 'coupling'"]),
    ("defaults:", "initial: {r: {kind: uniform_fan_in, coupling: W_in}}\ndefaults:",
     "initial.r", ["couplings and parameters only"]),
])
def test_bad_fan_in_specs_name_the_file_and_key(tmp_path, capsys, old, new, key, words):
    assert old in TWO_BIASES
    path = tmp_path / "model.yaml"
    path.write_text(TWO_BIASES.replace(old, new))
    code = cli.main(["simulate", str(path), "-o", str(tmp_path / "out.nc"), "--steps", "2",
                     "--quiet"])
    assert_clear_error(code, capsys.readouterr().err, str(path), key=key, words=words)
