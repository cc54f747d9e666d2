"""NeuroGym environments as tasks. Reference: the environment itself (same class, same
kwargs, seeded with the seed a batch gives it) for inputs, targets, masks and conditions;
the CLI end to end from the shipped protocol; errors naming the protocol key."""

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioplast import cli, load_protocol
from bioplast.errors import InputError
from bioplast.tasks import TASKS
from bioplast.tasks.neurogym_env import environment_class, environment_seed

REPO = Path(__file__).resolve().parents[1]
PROTOCOL = REPO / "protocols" / "neurogym_perceptual_decision.yaml"
DT = 0.02  # seconds: the environment's 20 ms

#: environment -> env_kwargs (short timing, in ms, keeps trials small)
ENVIRONMENTS = {
    "PerceptualDecisionMaking-v0": {"timing": {"fixation": 100, "stimulus": 300,
                                               "delay": 0, "decision": 100}},
    "DelayMatchSample-v0": {},
    "GoNogo-v0": {},
    "ContextDecisionMaking-v0": {},
}


def make(env, dt=DT, **config):
    cls = TASKS.get("neurogym")
    return cls(cls.Config(env=env, env_kwargs=ENVIRONMENTS[env], **config), dt)


def reference_trials(env, seed, count):
    """``count`` trials of a fresh environment seeded with ``seed``: (ob, gt, info, periods)."""
    environment = environment_class(env)(dt=DT * 1e3, **ENVIRONMENTS[env])
    environment.seed(seed)
    trials = []
    for _ in range(count):
        info = environment.new_trial()
        trials.append((environment.ob.copy(), environment.gt.copy(), info,
                       (dict(environment.start_ind), dict(environment.end_ind))))
    return trials


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_trials_are_the_environments_own(env):
    task = make(env)
    batch = task.sample(8, np.random.default_rng(7))
    seed = environment_seed(np.random.default_rng(7))
    assert batch.inputs.shape == (8, task.max_steps(), task.n_inputs)
    assert task.n_outputs == environment_class(env)(dt=20).action_space.n
    for index, (ob, gt, info, _) in enumerate(reference_trials(env, seed, 8)):
        kept = min(len(gt), task.max_steps())
        np.testing.assert_array_equal(batch.inputs[index, :kept], ob[:kept])
        np.testing.assert_array_equal(batch.targets[index, :kept].argmax(axis=-1), gt[:kept])
        assert batch.targets[index, :kept].sum(axis=-1).tolist() == [1.0] * kept
        np.testing.assert_array_equal(batch.mask[index, :kept], 1.0)  # every trial step
        np.testing.assert_array_equal(batch.mask[index, kept:], 0.0)  # padding
        np.testing.assert_array_equal(batch.inputs[index, kept:], 0.0)
        for key, value in info.items():
            assert batch.conditions[key][index] == value
    assert set(batch.conditions) >= {"ground_truth"}


def test_loss_period_weighs_only_that_period():
    task = make("GoNogo-v0", loss_period="decision")
    batch = task.sample(6, np.random.default_rng(1))
    seed = environment_seed(np.random.default_rng(1))
    for index, (_, gt, _, (start, end)) in enumerate(reference_trials("GoNogo-v0", seed, 6)):
        expected = np.zeros(task.max_steps())
        expected[start["decision"]:end["decision"]] = 1.0
        np.testing.assert_array_equal(batch.mask[index, :, 0], expected)
        np.testing.assert_array_equal(batch.mask[index], batch.mask[index, :, :1].repeat(2, 1))


def test_duration_pads_and_cuts_and_seed_reproduces():
    task = make("PerceptualDecisionMaking-v0", duration="200 ms")  # trials are 500 ms: cut
    batch = task.sample(4, np.random.default_rng(2))
    assert batch.inputs.shape[1] == 10 and batch.mask.all()
    long = make("PerceptualDecisionMaking-v0", duration="1000 ms")  # padded after 25 steps
    padded = long.sample(4, np.random.default_rng(2))
    assert padded.mask[:, :25].all() and not padded.mask[:, 25:].any()
    np.testing.assert_array_equal(padded.inputs[:, :10], batch.inputs)
    again = long.sample(4, np.random.default_rng(2))
    np.testing.assert_array_equal(again.inputs, padded.inputs)
    assert not np.array_equal(long.sample(4, np.random.default_rng(3)).inputs, padded.inputs)


def test_score_reads_only_weighed_steps():
    task = make("ContextDecisionMaking-v0", loss_period="decision")
    batch = task.sample(16, np.random.default_rng(3))
    outputs = np.random.default_rng(4).normal(size=batch.targets.shape)
    zeroed = np.where(batch.mask.any(axis=(0, 2))[None, :, None], outputs, 0.0)
    np.testing.assert_array_equal(task.score(zeroed, batch), task.score(outputs, batch))
    assert task.score(batch.targets, batch)[0] == 1.0


@pytest.mark.parametrize("setting, key, words", [
    ({"task.env": "PerceptualDecisionMakin-v0"}, "task.env", "PerceptualDecisionMaking-v0"),
    ({"task.env_kwargs.timingg": {"decision": 100}}, "task.env_kwargs", "env_kwargs.timingg"),
    ({"task.env_kwargs.dt": 10}, "task.env_kwargs", "the model's dt"),
    ({"task.env_kwargs.timing": {"stimulus": ["uniform", 1]}}, "task.env_kwargs", "refused"),
    ({"task.loss_period": "decide"}, "task.loss_period", "decision"),
    ({"task.duration": "30 ms"}, "task.duration", "whole number"),
])
def test_errors_name_the_key(setting, key, words):
    with pytest.raises(InputError) as raised:
        load_protocol(PROTOCOL, setting)
    assert key in str(raised.value) and words in str(raised.value)


def test_without_neurogym_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "neurogym", None)
    with pytest.raises(InputError, match=r"pip install 'bioplast\[neurogym\]'"):
        make("GoNogo-v0")


def test_protocol_trains_from_the_cli_and_compare_matches_conditions(tmp_path, capsys):
    out = tmp_path / "ng.nc"
    assert cli.main(["run", str(PROTOCOL), "-o", str(out), "--quiet",
                     "--set", "training.epochs=2", "--set", "training.steps_per_epoch=2",
                     "--set", "model.n_units=16", "--set", "record.trials=24"]) == 0
    with xr.open_dataset(out) as result:
        coherence = result["condition_coh"].values
        assert result["condition_ground_truth"].dims == ("trial",)
        assert set(np.unique(result["condition_ground_truth"].values)) <= {0, 1}
        assert len(np.unique(coherence)) > 1
    assert cli.main(["compare", str(out), str(out), "--condition", "condition_coh",
                     "--metric", "cka", "--shuffles", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(np.unique(coherence))} conditions" in printed


def test_env_kwargs_must_be_plain_values():
    cls = TASKS.get("neurogym")
    config = cls.Config(env="GoNogo-v0", env_kwargs={"timing": {"delay": {1, 2}}})
    with pytest.raises(ValueError, match=r"env_kwargs\.timing\.delay: must be a number"):
        cls(config, DT)
