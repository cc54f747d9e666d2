"""Model files: parsing, parameter specs, initializers and constraints."""

import numpy as np
import pytest
import torch

import bioplast
from bioplast.quantities import parse_quantity
from conftest import SHIPPED_MODELS


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_models_load_and_initialize(name):
    model = bioplast.load_model(name)
    params = model.init_params(seed=0)
    assert list(params) == list(model.params)
    for key, value in params.items():
        assert value.shape == model.param_shape(key)
        assert np.all(np.isfinite(value))
    assert model.check_params(params) is None
    np.testing.assert_array_equal(model.init_params(0)["W_rec"], params["W_rec"])
    assert not np.array_equal(model.init_params(1)["W_rec"], params["W_rec"])
    state = model.initial_state(5, seed=0)
    assert {k: v.shape for k, v in state.items()} == {s: (5, model.n_units)
                                                       for s in model.state_names}


def test_leaky_tau_follows_the_paper():
    """Khajehabdollahi et al.: tau_i = 1 + U(0, 1) steps, tau >= 1 step, no autapses."""
    model = bioplast.load_model("leaky_tau")
    params = model.init_params(0)
    assert params["tau"].shape == (500,)
    assert np.all((params["tau"] >= 1) & (params["tau"] <= 2))
    assert model.params["tau"].trainable and model.params["tau"].min == 1
    assert np.all(np.diag(params["W_rec"]) == 0)
    bound = 1 / np.sqrt(500)  # torch nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.max(np.abs(params["W_rec"])) <= bound and np.max(np.abs(params["W_rec"])) > 0.9 * bound
    assert not model.params["sigma"].trainable


def test_ei_rate_keeps_dale_signs_and_population_taus():
    model = bioplast.load_model("ei_rate")
    params = model.init_params(0)
    w = params["W_rec"]
    assert np.all(w[:, :80] >= 0) and np.all(w[:, 80:] <= 0)
    assert np.all(np.diag(w) == 0)
    # balanced: inhibitory columns scaled by n_E / n_I, mean drive close to zero
    assert abs(w.sum(axis=1).mean()) < 0.2 * np.abs(w).sum(axis=1).mean()
    np.testing.assert_array_equal(params["tau"], [0.02] * 80 + [0.01] * 20)
    flipped = w.copy()
    flipped[0, 1], flipped[0, 90] = -0.5, 0.5
    projected = model.constrain(flipped, "W_rec")
    assert projected[0, 1] == 0 and projected[0, 90] == 0
    tensor = model.constrain(torch.as_tensor(flipped), "W_rec")
    np.testing.assert_array_equal(tensor.numpy(), projected)


def test_constraints_project_and_check():
    model = bioplast.load_model("leaky_tau", n_units=4)
    params = model.init_params(0)
    params["tau"][1] = 0.5
    with pytest.raises(bioplast.InputError, match="tau: violates"):
        model.check_params(params)
    assert model.constrain(params["tau"], "tau")[1] == 1
    params = model.init_params(0)
    params["W_in"] = params["W_in"][:, :0]
    with pytest.raises(bioplast.InputError, match=r"W_in: shape \(4, 0\)"):
        model.check_params(params)
    params = model.init_params(0)
    params["b"][0] = np.nan
    with pytest.raises(bioplast.InputError, match="NaN"):
        model.check_params(params)
    del params["b"]
    with pytest.raises(bioplast.InputError, match="missing b"):
        model.check_params(params)


def test_overrides_replace_defaults():
    model = bioplast.load_model("leaky_rate", n_units=7, dt="1 ms", tau="4 ms",
                                method="exponential_euler")
    assert (model.n_units, model.dt, model.method) == (7, 1e-3, "exponential_euler")
    assert model.init_params(0)["tau"] == pytest.approx(4e-3)
    with pytest.raises(bioplast.InputError, match="override n_unit"):
        bioplast.load_model("leaky_rate", n_unit=7)


def test_parameter_streams_are_independent_of_other_parameters(write_model):
    base = """\
equations: |
  dr/dt = (-r + I_rec) / tau : 1
  tau : second (shared)
  {extra}
couplings:
  W_rec: {{source: r, target: I_rec, init: {{kind: normal, std: 1}}}}
defaults: {{n_units: 3, dt: 1 ms, tau: 10 ms}}
"""
    plain = bioplast.load_model(write_model(base.format(extra="")))
    more = bioplast.load_model(write_model(base.format(extra="c : 1"), "more.yaml"))
    np.testing.assert_array_equal(plain.init_params(4)["W_rec"], more.init_params(4)["W_rec"])


def test_exponential_euler_needs_a_linear_equation(write_model):
    path = write_model("""\
equations: |
  dr/dt = -r**2 / tau : 1
  tau : second (shared)
defaults: {n_units: 2, dt: 1 ms, tau: 1 ms, method: exponential_euler}
""")
    with pytest.raises(bioplast.InputError, match="linear in 'r'") as info:
        bioplast.load_model(path)
    assert info.value.line == 2


@pytest.mark.parametrize("text,seconds", [("10 ms", 0.01), ("10*ms", 0.01), ("0.5 second", 0.5),
                                          ("2e-3 * second", 0.002), ("1 ms * 3", 0.003),
                                          ("ten ms", None), ("10 ms ms", None)])
def test_quantities(text, seconds):
    import brian2
    if seconds is None:
        with pytest.raises(ValueError):
            parse_quantity(text, brian2.second.dim)
    else:
        assert parse_quantity(text, brian2.second.dim) == pytest.approx(seconds)


def test_quantity_errors():
    import brian2
    with pytest.raises(ValueError, match="needs a unit"):
        parse_quantity(10, brian2.second.dim)
    with pytest.raises(ValueError, match="'second' or 'ms'"):
        parse_quantity("1 s", brian2.second.dim)
    with pytest.raises(ValueError, match="has unit volt"):
        parse_quantity("1 mV", brian2.second.dim)
    assert parse_quantity("1.5 mV/ms", (brian2.volt / brian2.second).dim) == pytest.approx(1.5)


@pytest.mark.parametrize("init,message", [
    ("xavier", "cannot read 'xavier' as a value or an initializer"),
    ({"kind": "uniform", "low": 0}, "needs high"),
    ({"kind": "normal", "gain": 2}, "takes no argument 'gain'"),
    ({"E": 1}, "population names"),
])
def test_bad_init_specs(write_model, init, message):
    import yaml
    text = yaml.safe_dump({
        "equations": "dr/dt = (-r + I_rec) / tau : 1\ntau : second (shared)\n",
        "couplings": {"W_rec": {"source": "r", "target": "I_rec", "init": init}},
        "defaults": {"n_units": 3, "dt": "1 ms", "tau": "10 ms"}})
    with pytest.raises(bioplast.InputError, match=message) as info:
        bioplast.load_model(write_model(text))
    assert info.value.key == "couplings.W_rec.init"


def test_tanh_normal_draws_a_state_inside_a_tanh():
    """``{kind: tanh_normal, std: s}``: tanh(N(0, s^2)), as ``tanh(s * randn)`` in code."""
    model = bioplast.load_model("leaky_rate", **{"initial.r": {"kind": "tanh_normal",
                                                               "std": 0.1}})
    drawn = model.initial_state(200, seed=4)["r"]
    normal = bioplast.load_model(model, **{"initial.r": {"kind": "normal", "std": 0.1}})
    np.testing.assert_allclose(drawn, np.tanh(normal.initial_state(200, seed=4)["r"]),
                               rtol=1e-15)
    assert model != normal


@pytest.mark.parametrize("edit,message,key", [
    ({"parameters": {"tau": {"min": "5 ms", "max": "1 ms"}}}, "min is above max",
     "override parameters.tau"),
    ({"tau": "0.5 ms"}, "outside the bounds", "override tau"),
    ({"b": "xavier_uniform"}, "coupling matrix", "override b"),
    ({"initial": {"r": {"kind": "normal", "std": -1}}}, "cannot be negative", "override initial.r"),
    ({"initial": {"r": {"kind": "uniform", "low": 2, "high": 1}}}, "below low", "override initial.r"),
    ({"initial": {"r": "1e999"}}, "finite", "override initial.r"),
    ({"readout": {"bias": False, "bias_init": 1}}, "bias: false", "override readout.bias_init"),
    ({"tau": " ms"}, "as a value or an initializer", "override tau"),
    ({"tau": {"kind": "tanh_normal", "std": 0.1}}, "draws dimensionless values; this array "
     "has unit second", "override tau"),
])
def test_inconsistent_values_are_errors(edit, message, key):
    base = {"parameters": {"tau": {"min": "1 ms"}}, "tau": "2 ms"}
    model_edits = {**edit} if "parameters" in edit else {**base, **edit}
    with pytest.raises(bioplast.InputError, match=message) as info:
        bioplast.load_model("leaky_rate", **model_edits)
    assert info.value.key == key


def test_a_value_in_defaults_and_an_init_in_parameters_conflict(write_model):
    path = write_model("""\
equations: |
  dr/dt = -r / tau : 1
  tau : second
parameters: {tau: {init: {kind: uniform, low: 1 ms, high: 2 ms}}}
defaults: {n_units: 2, dt: 1 ms, tau: 5 ms}
""")
    with pytest.raises(bioplast.InputError, match="keep one") as info:
        bioplast.load_model(path)
    assert info.value.key == "defaults.tau" and info.value.line == 5
    model = bioplast.load_model(path.read_text().replace(", tau: 5 ms", ""), tau="3 ms")
    assert np.all(model.init_params(0)["tau"] == 3e-3)  # an override replaces the init


def test_shared_parameters_take_no_population_values(write_model):
    path = write_model("""\
equations: |
  dr/dt = -r / tau : 1
  tau : second (shared)
populations: {E: 0.5, I: 0.5}
parameters: {tau: {init: {E: 10 ms, I: 5 ms}}}
defaults: {n_units: 4, dt: 1 ms}
""")
    with pytest.raises(bioplast.InputError, match="shared") as info:
        bioplast.load_model(path)
    assert info.value.key == "parameters.tau.init"


def test_models_need_a_differential_equation_and_outputs_a_readout(write_model):
    with pytest.raises(bioplast.InputError, match="at least one differential"):
        bioplast.load_model(write_model("equations: 'a : 1'\ndefaults: {n_units: 2, dt: 1 ms}\n"))
    with pytest.raises(bioplast.InputError, match="no readout") as info:
        bioplast.load_model(write_model(
            "equations: 'dr/dt = -r/(5*ms) : 1'\ndefaults: {n_units: 2, dt: 1 ms, n_outputs: 2}\n"))
    assert info.value.key == "defaults.n_outputs"


def test_params_that_are_not_numbers_are_input_errors():
    model = bioplast.load_model("leaky_rate", n_units=3)
    params = model.init_params(0)
    params["tau"] = "10 ms"
    with pytest.raises(bioplast.InputError, match="tau: not an array of real numbers"):
        model.check_params(params)


def test_an_init_range_outside_the_bounds_is_an_error():
    with pytest.raises(bioplast.InputError, match=r"initial values 0.5 to 2 "
                                                  r"are outside the bounds") as info:
        bioplast.load_model("leaky_tau", **{"parameters.tau.init": {
            "kind": "uniform", "low": 0.5, "high": 2}})
    assert info.value.key == "override parameters.tau.init"
    with pytest.raises(bioplast.InputError, match="outside the bounds"):
        bioplast.load_model("leaky_rate", tau="-5 ms")  # time constants are positive


AUTAPSES_PROTOCOL = """\
name: autapses
model: {file: leaky_rate, n_units: 8, readout.activation: sigmoid}
task: {name: delayed_cue, cue: 30 ms, delay: 20 ms, response: 50 ms, post: 0 ms}
rule: {name: bptt, optimizer: {name: sgd, lr: 0.5}}
training: {epochs: 1, steps_per_epoch: 1, batch_size: 8, eval_batches: 1}
backend: {name: torch, dtype: float64}
record: {trials: 1}
"""


@pytest.mark.parametrize("autapses,trained", [("start_at_zero", True), (False, False)])
def test_autapses_start_at_zero_are_trained_false_stay_zero(autapses, trained):
    """``autapses: start_at_zero``: the diagonal is zero as drawn, then trained (as the
    delayed-cue paper's code zeroes W_rec's diagonal once); ``false`` keeps it at zero."""
    from bioplast.protocol import load_protocol
    from bioplast.training import train
    protocol = load_protocol(AUTAPSES_PROTOCOL, {"model.couplings.W_rec.autapses": autapses})
    spec = protocol.model.params["W_rec"]
    assert (spec.zero_diagonal, spec.zero_diagonal_at_init) == (not trained, trained)
    before = protocol.model.init_params(protocol.seed)["W_rec"]
    assert np.all(np.diag(before) == 0) and np.all(before[~np.eye(8, dtype=bool)] != 0)
    after = train(protocol).params["W_rec"]
    assert not np.array_equal(after, before)
    assert np.all(np.diag(after) != 0) if trained else np.all(np.diag(after) == 0)


def test_autapses_start_at_zero_is_part_of_the_model_not_of_its_time_loop():
    trained = bioplast.load_model("leaky_rate", **{"couplings.W_rec.autapses": True})
    start_at_zero = bioplast.load_model(trained, **{"couplings.W_rec.autapses":
                                                    "start_at_zero"})
    assert start_at_zero != trained
    assert start_at_zero.structure_key() == trained.structure_key()
    params = start_at_zero.init_params(0)
    assert start_at_zero.check_params(params) is None
    params["W_rec"][0, 0] = 0.3  # a trained autapse violates nothing
    assert start_at_zero.check_params(params) is None
