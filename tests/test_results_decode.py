"""Decoding stored results (`bioplast.results`): what the command line and the analyses
read back from a result file, and the errors for damaged files, which name the file and
the attribute or variable."""

import numpy as np
import pytest
import xarray as xr

import bioplast
from bioplast import cli, results, schema
from bioplast.errors import InputError
from conftest import random_inputs

WHERE = "r.nc"

#: a tiny training run of the quickstart protocol: 6 units, one update, 8 test trials
QUICK = ["protocols/quickstart.yaml", "--set", "model.n_units=6", "--set", "training.epochs=1",
         "--set", "training.steps_per_epoch=1", "--set", "training.batch_size=4"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A simulation Dataset, a training result and an ensemble of two (loaded)."""
    folder = tmp_path_factory.mktemp("decode")
    for name, extra in (("training", []), ("ensemble", ["--set", "training.members=2"])):
        assert cli.main(["run", *QUICK, *extra, "-o", str(folder / f"{name}.nc"),
                         "--quiet"]) == 0
    model = bioplast.load_model("leaky_rate", n_units=5)
    simulation = bioplast.simulate(model, None, random_inputs(model, 3, 7), seed=11,
                                   noise=False)
    return {"simulation": simulation, "model": model,
            **{name: results.load(folder / f"{name}.nc") for name in ("training", "ensemble")}}


def message(error) -> str:
    return str(error.value)


# ------------------------------------------------------------------ protocol, seed, noise
def test_stored_protocol_gives_the_protocol_the_result_ran(stored):
    training = stored["training"]
    protocol = results.stored_protocol(training, WHERE, {"training.epochs": 2})
    assert protocol.schema.name == "quickstart" and protocol.schema.training.epochs == 2
    assert protocol.model.text.rstrip() == training.attrs[schema.ATTR_MODEL].rstrip()


@pytest.mark.parametrize("edit,settings,words", [
    (lambda d: d.attrs.pop(schema.ATTR_PROTOCOL), {},
     f"{WHERE}: no 'protocol' attribute: not a training result"),
    (lambda d: d.attrs.update(protocol=5), {}, f"{WHERE} (attribute 'protocol'): not text"),
    (lambda d: d.attrs.update(model="a\0b"), {}, f"{WHERE} (attribute 'model'): not text"),
    (lambda d: None, {"model.file": "leaky_rate"}, f"{WHERE}: --set: the model cannot change"),
    (lambda d: None, {"training.epochs": -1},
     f"{WHERE} (attribute 'protocol'): training.epochs (from --set):"),
])
def test_stored_protocol_errors_name_the_file_and_attribute(stored, edit, settings, words):
    damaged = stored["training"].copy()
    damaged.attrs = dict(damaged.attrs)
    edit(damaged)
    with pytest.raises(InputError) as error:
        results.stored_protocol(damaged, WHERE, settings)
    assert message(error).startswith(words), message(error)


def test_stored_seed_and_noise(stored):
    simulation = stored["simulation"]
    assert results.stored_seed(simulation, WHERE) == 11
    assert results.stored_noise(simulation, WHERE) is False
    bare = simulation.copy()
    bare.attrs = {}
    assert results.stored_seed(bare, WHERE) == 0 and results.stored_noise(bare, WHERE) is True
    for attr, value in ((schema.ATTR_SEED, "abc"), (schema.ATTR_SEED, -5),
                        (schema.ATTR_NOISE, 2)):
        damaged = simulation.copy()
        damaged.attrs = {**simulation.attrs, attr: value}
        read = results.stored_seed if attr == schema.ATTR_SEED else results.stored_noise
        with pytest.raises(InputError) as error:
            read(damaged, WHERE)
        assert message(error).startswith(f"{WHERE}: the attribute '{attr}'"), message(error)


# ------------------------------------------------------------------ inputs, initial states
def test_stored_inputs_are_checked_against_the_model(stored):
    simulation, model = stored["simulation"], stored["model"]
    np.testing.assert_array_equal(results.stored_inputs(simulation, model, WHERE),
                                  simulation[schema.INPUTS].values)
    assert results.stored_inputs(simulation.drop_vars(schema.INPUTS), model, WHERE) is None
    poisoned = simulation.copy(deep=True)
    poisoned[schema.INPUTS][0, 0, 0] = np.nan
    with pytest.raises(InputError) as error:
        results.stored_inputs(poisoned, model, WHERE)
    assert message(error) == f"{WHERE} (variable 'inputs'): inputs hold NaN or inf"


def test_file_inputs_come_in_trial_time_input_order(stored):
    simulation = stored["simulation"]
    turned = simulation.transpose(schema.INPUT, schema.TIME, schema.TRIAL, ...)
    np.testing.assert_array_equal(results.file_inputs(turned, "in.nc"),
                                  simulation[schema.INPUTS].values)
    with pytest.raises(InputError, match=r"^in\.nc: no variable 'inputs'"):
        results.file_inputs(simulation.drop_vars(schema.INPUTS), "in.nc")
    flat = xr.Dataset({schema.INPUTS: (("a", "b"), np.zeros((2, 3)))})
    with pytest.raises(InputError, match=r"^in\.nc: 'inputs' has dims \('a', 'b'\)"):
        results.file_inputs(flat, "in.nc")


def test_stored_initial_state_and_its_shape_check(stored):
    simulation, model = stored["simulation"], stored["model"]
    initial = results.stored_initial_state(simulation, model, WHERE)
    assert list(initial) == list(model.state_names)
    np.testing.assert_array_equal(initial["r"], simulation["initial_r"].values)
    assert results.stored_initial_state(simulation.drop_vars("initial_r"), model, WHERE) == {}
    damaged = simulation.drop_vars("initial_r").assign(initial_r=(("trial", "u9"),
                                                                  np.zeros((3, 9))))
    with pytest.raises(InputError) as error:
        results.stored_initial_state(damaged, model, WHERE)
    assert message(error).startswith(f"{WHERE}: initial_r: shape (3, 9), expected (trial, 5)")


# ------------------------------------------------------------------ one network's model and trials
def test_result_model_of_a_result_an_ensemble_and_a_recording(stored):
    training = stored["training"]
    model, params = results.result_model(training, WHERE)
    assert model.n_units == 6 and set(params) == set(model.params)
    np.testing.assert_array_equal(params["W_rec"], training["W_rec"].values)
    recording = xr.Dataset({"rates": (("trial", "time", "unit"), np.zeros((1, 2, 3)))})
    assert results.result_model(recording, WHERE) == (None, None)
    with pytest.raises(InputError) as error:
        results.result_model(stored["ensemble"], WHERE)
    assert message(error).startswith(f"{WHERE}: the result holds several networks (dims "
                                     "member): select one first (--select member=VALUE")
    with pytest.raises(InputError) as error:
        results.result_model(training.drop_vars("W_rec"), WHERE)
    assert message(error) == f"{WHERE}: the result lacks the parameters W_rec"


def test_recorded_trials_and_their_initial_states(stored):
    training = stored["training"]
    model, _ = results.result_model(training, WHERE)
    states, inputs = results.recorded_trials(training, model, WHERE)
    assert states.shape == (8, training.sizes["time"], 6) and inputs.shape[2] == model.n_inputs
    np.testing.assert_array_equal(states, training["r"].transpose("trial", "time",
                                                                  "unit").values)
    initial = results.trial_initial_state(training, model, 8, WHERE)
    np.testing.assert_array_equal(initial["r"], training["initial_r"].values)
    assert results.trial_initial_state(training.drop_vars("initial_r"), model, 8, WHERE) \
        is None
    with pytest.raises(InputError) as error:
        results.trial_initial_state(training, model, 4, WHERE)
    assert message(error) == (f"{WHERE}: initial_r: does not fit the model: trial=8 (the "
                              "model has 4)")


@pytest.mark.parametrize("edit,words", [
    (lambda d: d.drop_vars(schema.INPUTS), "r.nc: the dynamics need the recorded states and "
                                           "inputs of the result (missing: inputs)"),
    (lambda d: d.drop_vars("r"), "r.nc: the dynamics need the recorded states and inputs of "
                                 "the result (missing: r)"),
    (lambda d: d.isel(unit=slice(0, 2)),
     "r.nc: r: does not fit the model: unit=2 (the model has 6)"),
    (lambda d: d.assign(r=d["r"].astype(str)), "r.nc: r: holds text or objects, not real"),
    (lambda d: d.assign(inputs=d[schema.INPUTS].rename(input="channel")),
     "r.nc: inputs: has dims (trial, time, channel); expected (trial, time, input)"),
    (lambda d: d.isel(time=slice(0, 0)),
     "r.nc: inputs: the states (8 trials x 0 steps) and the inputs (8 x 0) do not match"),
])
def test_recorded_trials_errors_name_the_file_and_variable(stored, edit, words):
    training = stored["training"]
    model, _ = results.result_model(training, WHERE)
    damaged = edit(training.copy())
    with pytest.raises(InputError) as error:
        results.recorded_trials(damaged, model, WHERE)
    assert message(error).startswith(words), message(error)


# ------------------------------------------------------------------ networks of an ensemble
def test_choose_network_checks_the_selection(stored):
    ensemble = stored["ensemble"]
    assert results.choose_network(ensemble, {}, WHERE) is ensemble
    one = results.choose_network(ensemble, {"member": 1}, WHERE)
    xr.testing.assert_identical(one, results.select_network(ensemble, member=1))
    assert schema.MEMBER not in one.dims
    with pytest.raises(InputError) as error:
        results.choose_network(ensemble, {"lr": 0.1}, WHERE)
    assert message(error).startswith(f"{WHERE}: --select: no dim 'lr' to select from (dims:")
    with pytest.raises(InputError) as error:
        results.choose_network(ensemble, {"member": 5}, WHERE, key="member")
    assert message(error) == f"{WHERE}: member: member=5 is not among member's values (0, 1)"


def test_network_values_of_an_ensemble_and_of_one_network(stored):
    ensemble, training = stored["ensemble"], stored["training"]
    statuses = results.network_values(ensemble, schema.ATTR_STATUS, WHERE)
    assert statuses.shape == (2,) and set(statuses) == {schema.STATUS_COMPLETE}
    assert results.network_values(training, schema.ATTR_STATUS, WHERE).item() == \
        training.attrs[schema.ATTR_STATUS]
    with pytest.raises(InputError) as error:
        results.network_values(training, "nothing", WHERE)
    assert message(error) == (f"{WHERE}: network_nothing: no 'nothing' attribute and no "
                              "variable 'network_nothing'")
