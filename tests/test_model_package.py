"""The model package: a frozen, hashable `Model`, its structure key, pickling and the names
``bioplast.model`` exports."""

import pickle

import pytest

import bioplast
import bioplast.model
from conftest import LINEAR_MODEL, MODELS_DIR


@pytest.mark.parametrize("name", ["n_units", "file", "params", "drift", "new_attribute"])
def test_a_model_is_frozen(name):
    model = bioplast.load_model("leaky_rate", n_units=4)
    with pytest.raises(AttributeError, match=f"'{name}'.*frozen"):
        setattr(model, name, 3)
    with pytest.raises(AttributeError, match=f"'{name}'.*frozen"):
        delattr(model, name)
    assert model.n_units == 4


def test_loads_of_one_file_with_the_same_overrides_are_equal(write_model):
    first = bioplast.load_model(write_model(LINEAR_MODEL), n_units=5, tau="20 ms")
    # another load, from another file with the same text, the value written otherwise
    second = bioplast.load_model(write_model(LINEAR_MODEL, "copy.yaml"), n_units=5,
                                 tau="0.02 second")
    assert first.file != second.file
    assert first == second and hash(first) == hash(second)
    assert len({first, second}) == 1
    assert bioplast.load_model(first) == first  # re-read without further overrides


@pytest.mark.parametrize("overrides", [
    {"n_units": 7}, {"n_inputs": 3}, {"tau": "30 ms"}, {"dt": "2 ms"},
    {"method": "exponential_euler"}, {"couplings.W_rec.init": "zeros"},
    {"initial.r": 0}, {"description": "another"}])
def test_models_that_behave_differently_are_not_equal(overrides):
    base = bioplast.load_model(LINEAR_MODEL)
    assert bioplast.load_model(LINEAR_MODEL, **overrides) != base
    assert bioplast.load_model(LINEAR_MODEL + "# a comment\n") != base  # another text
    assert base != "not a model"


def test_structure_key_ignores_sizes_and_values():
    base = bioplast.load_model(LINEAR_MODEL)
    for overrides in [{"n_units": 50}, {"n_inputs": 4, "n_outputs": 3}, {"tau": "30 ms"},
                      {"couplings.W_rec.init": "zeros"}, {"initial.r": 0},
                      {"description": "another"}]:
        other = bioplast.load_model(LINEAR_MODEL, **overrides)
        assert other != base
        assert other.structure_key() == base.structure_key()
        assert hash(other.structure_key()) == hash(base.structure_key())


@pytest.mark.parametrize("overrides", [
    {"method": "exponential_euler"}, {"dt": "2 ms"},
    {"equations": "dr/dt = (-r + tanh(I_rec + I_in) + b) / tau : 1\nb : 1 (trainable)\n"
                  "tau : second (constant, shared)\n"},
    {"readout.activation": "tanh"}, {"readout.bias": False},
    {"couplings.W_rec.trainable": False}, {"couplings.W_rec.autapses": False},
    {"parameters.tau.min": "1 ms"}])
def test_structure_key_follows_what_the_time_loop_does(overrides):
    base = bioplast.load_model(LINEAR_MODEL)
    assert bioplast.load_model(LINEAR_MODEL, **overrides).structure_key() \
        != base.structure_key()


def test_structure_key_holds_exact_sympy_forms():
    model = bioplast.load_model(LINEAR_MODEL)
    key = model.structure_key()
    assert key.method == "euler" and key.dt == pytest.approx(1e-3)
    assert key.state_names == ("r",) and [name for name, _ in key.drift] == ["r"]
    assert [c.name for c in key.couplings] == ["W_rec", "W_in"]
    assert [p[0] for p in key.params] == list(model.params)

    def gain(value):  # constants that print alike with 15 digits
        return bioplast.load_model(LINEAR_MODEL, equations=(
            f"dr/dt = (-r + I_rec + I_in + {value}*b) / tau : 1\nb : 1 (trainable)\n"
            "tau : second (constant, shared)\n")).structure_key()
    assert gain("0.1") != gain("0.1000000000000001")


@pytest.mark.parametrize("name", ["leaky_rate", "ei_rate"])
def test_a_model_pickles_equal_and_frozen(name):
    model = bioplast.load_model(name, n_units=10)
    hash(model)  # a computed identity travels along
    again = pickle.loads(pickle.dumps(model))
    assert again == model and hash(again) == hash(model)
    assert again.structure_key() == model.structure_key()
    fresh = pickle.loads(pickle.dumps(bioplast.load_model(name, n_units=10)))
    assert fresh == model  # and one computed after unpickling
    with pytest.raises(AttributeError, match="frozen"):
        again.n_units = 3


def test_the_package_exports_what_the_code_base_imports():
    for name in bioplast.model.__all__:
        assert getattr(bioplast.model, name) is not None
    assert {"Model", "load_model", "list_models", "find_model_file", "INPUT_SOURCE",
            "RANDOM_MEANS", "RANDOM_FUNCTIONS", "SUPPORTED_FUNCTIONS",
            "linear_coefficients"} <= set(bioplast.model.__all__)
    assert bioplast.Model is bioplast.model.Model
    assert bioplast.model.SHIPPED_MODELS_DIR == MODELS_DIR
