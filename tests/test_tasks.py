"""Tasks: labels against brute-force recomputation from the inputs, period timing in steps,
masks, and reproducibility from a seed."""

import itertools

import numpy as np
import pytest
import torch

from bioplast.tasks import TASKS, Level


def make(name, dt=1e-3, **config):
    cls = TASKS.get(name)
    return cls(cls.Config(**config), dt)


def test_registry_lists_every_task():
    assert TASKS.names() == sorted(["n_parity", "n_dms", "delayed_cue", "flip_flop",
                                    "delayed_addition", "evidence_accumulation"])


@pytest.mark.parametrize("name", ["n_parity", "n_dms"])
@pytest.mark.parametrize("curriculum", ["multi_head", "single_head"])
def test_bit_task_labels_match_brute_force(name, curriculum):
    task = make(name, n=2, max_n=6, curriculum=curriculum)
    level = task.level_at(5)
    batch = task.sample(200, np.random.default_rng(0), level)
    bits = batch.inputs[..., 0].astype(int)
    length = bits.shape[1]
    assert 5 + 2 <= length < 4 * 5 + 2  # M ~ randint(N_max + 2, 4 N_max + 2)
    assert set(np.unique(bits)) <= {0, 1}
    for head, n in level.heads:
        expected = []
        for sequence in bits:
            if name == "n_parity":
                expected.append(sum(sequence[length - n:]) % 2)
            else:
                expected.append(int(sequence[length - n] == sequence[length - 1]))
        channels = task.head_channels(head)
        labels = batch.targets[:, -1, channels].argmax(axis=1)
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(batch.conditions[f"label_head{head}"], expected)
        # the loss is read at the last step only, on the head's two channels
        assert np.all(batch.mask[:, -1, channels] == 1)
        assert np.all(batch.mask[:, :-1] == 0)
    heads = [h for h, _ in level.heads]
    assert heads == (list(range(4)) if curriculum == "multi_head" else [0])


def test_parity_bits_have_a_random_rate_per_sequence():
    task = make("n_parity", n=3, curriculum="none", max_n=3)
    batch = task.sample(500, np.random.default_rng(1))
    rates = batch.inputs[..., 0].mean(axis=1)
    assert rates.std() > 0.2  # p ~ U(0, 1): rates spread out (Bernoulli(0.5) gives ~0.1)


def test_sequence_length_is_redrawn_per_batch():
    task = make("n_dms", n=4, curriculum="none", max_n=4)
    rng = np.random.default_rng(2)
    lengths = {task.sample(2, rng).n_steps for _ in range(30)}
    assert len(lengths) > 3 and min(lengths) >= 6 and max(lengths) < 18


def test_delayed_cue_timing_targets_and_weights():
    task = make("delayed_cue", dt=5e-3, cue="30 ms", delay="100 ms", response="50 ms",
                post="30 ms")
    batch = task.sample(128, np.random.default_rng(0))
    assert task.periods() == {"cue": 6, "delay": 20, "response": 10, "post": 6}
    assert batch.inputs.shape == (128, 42, 2)
    cues = batch.conditions["cue"]
    assert np.bincount(cues).tolist() == [64, 64]  # the paper's full batch: 64 per cue
    for trial in range(4):
        c = cues[trial]
        np.testing.assert_array_equal(batch.inputs[trial, :6, c], 1)
        assert batch.inputs[trial, 6:].sum() == 0 and batch.inputs[trial, :6, 1 - c].sum() == 0
        np.testing.assert_array_equal(batch.targets[trial, 26:36, c], 1)
        assert batch.targets[trial].sum() == 10
    weights = batch.mask[0, :, 0]
    np.testing.assert_allclose(weights[:26], 16 / 42)
    np.testing.assert_allclose(weights[26:], 1 - 16 / 42)
    perfect = batch.targets.copy()
    assert task.score(perfect, batch)[0] == 1.0
    assert task.score(perfect[..., ::-1], batch)[0] == 0.0


def test_durations_must_be_whole_steps():
    task = make("delayed_cue", dt=5e-3, delay="12 ms")
    with pytest.raises(ValueError, match="whole number of steps"):
        task.sample(2, np.random.default_rng(0))


def test_flip_flop_targets_hold_the_last_pulse():
    task = make("flip_flop", n_bits=3, duration="200 ms", flip_probability=0.05)
    batch = task.sample(20, np.random.default_rng(3))
    inputs, targets = batch.inputs, batch.targets
    assert set(np.unique(inputs)) <= {-1.0, 0.0, 1.0}
    for trial, bit in itertools.product(range(20), range(3)):
        held = 0.0
        for t in range(200):
            if inputs[trial, t, bit] != 0:
                held = inputs[trial, t, bit]
            assert targets[trial, t, bit] == held
    pulse_rate = np.mean(inputs != 0)
    assert 0.035 < pulse_rate < 0.065
    assert task.score(targets, batch)[0] == 1.0
    assert task.score(-targets, batch)[0] < 0.5


def test_delayed_addition_and_evidence_accumulation():
    addition = make("delayed_addition", stimulus="20 ms", delay="30 ms", response="5 ms")
    batch = addition.sample(50, np.random.default_rng(4))
    stream = batch.inputs[:, :20, 0]
    assert np.all((stream != 0).sum(axis=1) == 2)
    np.testing.assert_allclose(batch.conditions["answer"], stream.sum(axis=1))
    np.testing.assert_array_equal(batch.inputs[:, 50:, 1], 1)
    assert batch.mask[:, :50].sum() == 0 and np.all(batch.mask[:, 50:] == 1)
    np.testing.assert_allclose(batch.targets[:, 50:, 0],
                               np.repeat(batch.conditions["answer"][:, None], 5, axis=1))
    assert addition.score(batch.targets, batch)[0] == 1.0

    evidence = make("evidence_accumulation", stimulus="400 ms", noise=0.5,
                    coherences=[0.5])
    batch = evidence.sample(100, np.random.default_rng(5))
    mean = batch.inputs[:, :400, 0].mean(axis=1)
    np.testing.assert_array_equal(np.sign(mean), batch.conditions["answer"])
    assert evidence.score(batch.targets, batch)[0] == 1.0


@pytest.mark.parametrize("name", ["n_parity", "n_dms", "delayed_cue", "flip_flop",
                                  "delayed_addition", "evidence_accumulation"])
def test_tasks_are_reproducible_from_the_generator(name):
    task = make(name, dt=5e-3 if name == "delayed_cue" else 1e-3)
    first = task.sample(6, np.random.default_rng(9), task.initial_level())
    again = task.sample(6, np.random.default_rng(9), task.initial_level())
    other = task.sample(6, np.random.default_rng(10), task.initial_level())
    for field in ("inputs", "targets", "mask"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    if name != "delayed_cue":  # the paper's delayed-cue batch is deterministic
        assert not np.array_equal(first.inputs, other.inputs)
    assert first.inputs.shape[-1] == task.n_inputs
    assert first.targets.shape[-1] == task.n_outputs


def test_cross_entropy_loss_of_heads():
    """Reference: torch.nn.functional.cross_entropy on the masked last step, summed over
    the active heads."""
    task = make("n_parity", n=2, max_n=4, curriculum="multi_head")
    level = task.level_at(4)
    batch = task.sample(16, np.random.default_rng(0), level)
    outputs = torch.randn(16, batch.n_steps, task.n_outputs, dtype=torch.float64)
    loss = task.loss_value(outputs, torch.as_tensor(batch.targets), torch.as_tensor(batch.mask),
                           level)
    expected = sum(torch.nn.functional.cross_entropy(
        outputs[:, -1, 2 * h:2 * h + 2], torch.as_tensor(batch.conditions[f"label_head{h}"]))
        for h, _ in level.heads)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("name", TASKS.names())
def test_scores_use_only_the_steps_the_mask_weighs(name):
    """Training evaluates the readout only at the steps the mask weighs (`forward` with
    ``scored_only``), so every task's score must not read other steps. Reference: the
    score of random outputs equals the score of the same outputs zeroed elsewhere."""
    task = make(name, dt=5e-3 if name == "delayed_cue" else 1e-3)
    level = task.largest_level()
    batch = task.sample(32, np.random.default_rng(3), level)
    outputs = np.random.default_rng(4).normal(size=batch.targets.shape)
    weighed = batch.mask.any(axis=(0, 2))
    zeroed = np.where(weighed[None, :, None], outputs, 0.0)
    np.testing.assert_array_equal(task.score(zeroed, batch, level),
                                  task.score(outputs, batch, level))
