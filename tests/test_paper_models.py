"""The shipped models of the two source papers' networks against those papers' own code.

Reference: the authors' published code, replicated here (module structure, layer types and
formula of the forward pass as written there):
- models/phases_rnn.yaml: Kurtkaya, Dinc et al. 2025 (arXiv 2502.17433),
  fatihdinc/dynamical-phases-stm, Experiments/rnn-large-nopost/narrow/src/rnn.py, class RNN;
- models/timescale_rnn.yaml: Khajehabdollahi, Zeraati et al. 2024 (arXiv 2309.12927),
  LevinaLab/rnn_timescale_public, src/models/RNN_modified.py, class RNN_Mod (one layer).
bioplast's initial parameters are copied into the replica, both run the same inputs and
initial states with noise off in float64 (bioplast through `bioplast.simulate`), and states
and outputs agree to 1e-12. The initial parameters are also compared with the replica's own
initialisation (bounds, range filled, same law).
"""

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplast
from conftest import random_inputs

TOLERANCE = 1e-12


class AuthorsPhasesRNN(nn.Module):
    """fatihdinc/dynamical-phases-stm src/rnn.py ``RNN`` (noise_sigma as given; the initial
    firing rates, drawn there inside ``forward``, are passed in)."""

    def __init__(self, in_dim, hid_dim, out_dim, alpha, noise_sigma):
        super().__init__()
        self.alpha, self.noise_sigma = alpha, noise_sigma
        self.W_in = nn.Linear(in_dim, hid_dim, bias=True, dtype=torch.float64)
        self.W_rec = nn.Linear(hid_dim, hid_dim, bias=True, dtype=torch.float64)
        self.W_out = nn.Linear(hid_dim, out_dim, bias=True, dtype=torch.float64)
        nn.init.xavier_uniform_(self.W_in.weight)
        nn.init.xavier_uniform_(self.W_rec.weight)
        nn.init.xavier_uniform_(self.W_out.weight)
        with torch.no_grad():
            self.W_rec.weight.fill_diagonal_(0)

    def forward(self, inp, firing_rates):
        pred_out_list, firing_rate_list = [], []
        for t in range(inp.shape[1]):
            pred, firing_rates = self.forward_step(inp[:, t], firing_rates)
            pred_out_list.append(pred)
            firing_rate_list.append(firing_rates)
        return (torch.stack(pred_out_list).permute(1, 0, 2),
                torch.stack(firing_rate_list).permute(1, 0, 2))

    def forward_step(self, inp, firing_rate):
        pred_out = F.sigmoid(self.W_out(firing_rate))
        hid = self.W_in(inp)
        rec = self.W_rec(firing_rate)
        noise = torch.randn(rec.shape, dtype=rec.dtype) * self.noise_sigma
        z = F.tanh(hid + rec + noise)
        pred_firing_rates = (1 - self.alpha) * firing_rate + self.alpha * z
        return pred_out, pred_firing_rates


class AuthorsRNNMod(nn.Module):
    """LevinaLab/rnn_timescale_public src/models/RNN_modified.py ``RNN_Mod`` with one layer
    and trained taus (``train_tau=True``, ``tau=1``); the initial state, drawn there inside
    ``forward``, is passed in; ``savetime=True, classify_in_time=True``."""

    def __init__(self, input_size, net_size, num_classes, num_readout_heads):
        super().__init__()
        self.input_layers = [nn.Linear(input_size, net_size, dtype=torch.float64)]
        self.w_hh = [nn.Linear(net_size, net_size, dtype=torch.float64)]
        self.taus = [nn.Parameter(1. + 1. * torch.rand(net_size, dtype=torch.float64))]
        self.fc = [nn.Linear(net_size, num_classes, dtype=torch.float64)
                   for _ in range(num_readout_heads)]
        self.afunc = nn.LeakyReLU()
        self.parameterlist = nn.ParameterList(self.taus)
        self.modulelist = nn.ModuleList(self.input_layers + self.w_hh + self.fc)

    def forward(self, data, hs):
        hs_t = [[h.clone() for h in hs]]
        x = torch.stack([input_layer(data) for input_layer in self.input_layers]).mean(dim=0)
        out = []
        self.w_hh[0].weight.data.fill_diagonal_(0.)
        for t in range(data.size(0)):
            inp = x[t, ...]
            tau = torch.clamp(self.taus[0], min=1.)
            hs[0] = (1 - 1 / tau) * hs[0] + self.afunc(self.w_hh[0](hs[0]) + inp) / tau
            hs_t.append([h.clone() for h in hs])
            out.append([self.fc[i](hs[-1]) for i in range(len(self.fc))])
        return hs_t, out


def copy_into(layer: nn.Linear, weight, bias):
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight))
        layer.bias.copy_(torch.as_tensor(bias))


def phases_replica(model, params):
    net = AuthorsPhasesRNN(model.n_inputs, model.n_units, model.n_outputs,
                           alpha=model.dt / params["tau"], noise_sigma=0.0)
    copy_into(net.W_in, params["W_in"], params["b_in"])
    copy_into(net.W_rec, params["W_rec"], params["b_rec"])
    copy_into(net.W_out, params["W_out"], params["b_out"])
    return net


def timescale_replica(model, params):
    net = AuthorsRNNMod(model.n_inputs, model.n_units, 2, model.n_outputs // 2)
    copy_into(net.input_layers[0], params["W_in"], params["b_in"])
    copy_into(net.w_hh[0], params["W_rec"], params["b_rec"])
    for head, layer in enumerate(net.fc):
        rows = slice(2 * head, 2 * head + 2)
        copy_into(layer, params["W_out"][rows], params["b_out"][rows])
    with torch.no_grad():
        net.taus[0].copy_(torch.as_tensor(params["tau"]))
    return net


def simulate(model, params, n_trials, n_steps):
    """Inputs, initial state, states, outputs and the recorded variables of a noise-free run."""
    inputs = random_inputs(model, n_trials, n_steps, seed=2)
    ds = bioplast.simulate(model, params, inputs, "torch", noise=False, seed=3, dtype="float64")
    state = model.state_names[0]
    return inputs, ds[f"initial_{state}"].values, ds[state].values, ds["outputs"].values, ds


def assert_equal(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE, err_msg=what)


def test_phases_rnn_is_the_authors_network():
    """States equal the code's at every step; the code's output at step t reads the state at
    the start of the step, bioplast's at its end: ours at t is theirs at t + 1."""
    model = bioplast.load_model("phases_rnn")
    params = model.init_params(seed=1)
    params["W_rec"][np.diag_indices(model.n_units)] = np.linspace(-0.5, 0.5, model.n_units)
    inputs, initial, states, outputs, _ = simulate(model, params, n_trials=6, n_steps=40)
    with torch.no_grad():
        pred, rates = phases_replica(model, params)(torch.as_tensor(inputs),
                                                    torch.as_tensor(initial))
    assert np.std(states[:, -1]) > 0.05  # the activity moves
    assert_equal(states, rates.numpy(), "states")
    assert_equal(outputs[:, :-1], pred.numpy()[:, 1:], "outputs, one step apart")
    ours_at_start = 1 / (1 + np.exp(-(initial @ params["W_out"].T + params["b_out"])))
    assert_equal(ours_at_start, pred.numpy()[:, 0], "the code's first output reads r_0")


def test_timescale_rnn_is_the_authors_network():
    """States and every head's output equal the code's at every step, with taus below 1
    (clamped in the step) and activity on both sides of the LeakyReLU's kink."""
    model = bioplast.load_model("timescale_rnn")
    params = model.init_params(seed=1)
    params["tau"][:50] = np.linspace(0.2, 1.0, 50)
    params["tau"][50:100] = np.linspace(3.0, 20.0, 50)
    inputs, initial, states, outputs, ds = simulate(model, params, n_trials=5, n_steps=30)
    with torch.no_grad():
        hs_t, out = timescale_replica(model, params)(
            torch.as_tensor(inputs).transpose(0, 1), [torch.as_tensor(initial)])
    theirs_states = torch.stack([hs[0] for hs in hs_t[1:]], dim=1).numpy()
    theirs_outputs = torch.stack([torch.cat(heads, dim=-1) for heads in out], dim=1).numpy()
    assert 0.1 < np.mean(ds["a"].values < 0) < 0.9  # LeakyReLU's input on both sides
    assert_equal(states, theirs_states, "states")
    assert_equal(outputs, theirs_outputs, "outputs of the 100 heads")


def replica_params(name):
    """The named module's own initial parameters under bioplast's names."""
    torch.manual_seed(0)
    if name == "phases_rnn":
        net = AuthorsPhasesRNN(2, 100, 2, alpha=0.5, noise_sigma=0.001)
        layers = {"W_in": net.W_in, "W_rec": net.W_rec, "W_out": net.W_out}
        biases = {"b_in": net.W_in, "b_rec": net.W_rec, "b_out": net.W_out}
        return {**{k: v.weight for k, v in layers.items()},
                **{k: v.bias for k, v in biases.items()}}
    net = AuthorsRNNMod(1, 500, 2, 100)
    return {"W_in": net.input_layers[0].weight, "b_in": net.input_layers[0].bias,
            "W_rec": net.w_hh[0].weight, "b_rec": net.w_hh[0].bias, "tau": net.taus[0],
            "W_out": torch.cat([layer.weight for layer in net.fc]),
            "b_out": torch.cat([layer.bias for layer in net.fc])}


BIAS_FAN_IN = {"phases_rnn": {"b_in": 2, "b_rec": 100, "b_out": 100},
               "timescale_rnn": {"b_in": 1, "b_rec": 500, "b_out": 500}}


@pytest.mark.parametrize("name", ["phases_rnn", "timescale_rnn"])
def test_initial_parameters_follow_the_authors_initialisation(name):
    """Biases U(+-1/sqrt(fan_in)) of their nn.Linear layer, filling the range; every array
    drawn from the law the authors' module draws its own from (two-sample KS)."""
    model = bioplast.load_model(name)
    params = model.init_params(seed=0)
    for bias, fan_in in BIAS_FAN_IN[name].items():
        largest, bound = np.max(np.abs(params[bias])), 1 / math.sqrt(fan_in)
        assert largest <= bound
        assert largest > 0.9 * bound or params[bias].size < 100  # b_out of 2 outputs
    assert np.all(np.diag(params["W_rec"]) == 0)
    theirs = replica_params(name)
    assert set(theirs) == {key for key, spec in model.params.items() if spec.trainable}
    for key, value in theirs.items():
        value = value.detach().numpy()
        assert value.shape == params[key].shape, key
        assert scipy.stats.ks_2samp(params[key].ravel(), value.ravel()).pvalue > 1e-3, key


def test_the_initial_states_are_the_authors():
    """phases_rnn: r_0 = tanh(0.1 randn); timescale_rnn: h_0 = 0.1 rand."""
    torch.manual_seed(0)
    laws = {"phases_rnn": torch.tanh(torch.randn(100 * 200, dtype=torch.float64) * 0.1),
            "timescale_rnn": 0.1 * torch.rand(500 * 40, dtype=torch.float64)}
    for name, theirs in laws.items():
        model = bioplast.load_model(name)
        ours = model.initial_state(theirs.numel() // model.n_units, seed=0)
        ours = ours[model.state_names[0]].ravel()
        assert scipy.stats.ks_2samp(ours, theirs.numpy()).pvalue > 1e-3, name


def test_phases_rnn_trains_its_autapses():
    """The code zeroes W_rec's diagonal once (fill_diagonal_ in __init__) and trains it."""
    model = bioplast.load_model("phases_rnn")
    assert model.params["W_rec"].zero_diagonal_at_init
    assert not model.params["W_rec"].zero_diagonal
    assert bioplast.load_model("timescale_rnn").params["W_rec"].zero_diagonal


@pytest.mark.brian2
@pytest.mark.parametrize("name", ["phases_rnn", "timescale_rnn"])
def test_brian2_simulates_the_same_network(name):
    model = bioplast.load_model(name, n_units=40)
    inputs = random_inputs(model, n_trials=3, n_steps=20, seed=1)
    runs = [bioplast.simulate(model, None, inputs, backend, noise=False, seed=5, **options)
            for backend, options in [("torch", {}), ("brian2", {"target": "numpy"})]]
    for key in (model.state_names[0], "outputs"):
        np.testing.assert_allclose(runs[1][key].values, runs[0][key].values, rtol=0,
                                   atol=1e-10, err_msg=key)
