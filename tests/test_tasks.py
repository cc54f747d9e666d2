"""Tasks: labels against brute-force recomputation from the inputs, period timing in steps,
masks, and reproducibility from a seed."""

import itertools

import numpy as np
import pytest
import torch

from bioplast.tasks import TASKS


def make(name, dt=1e-3, **config):
    cls = TASKS.get(name)
    return cls(cls.Config(**config), dt)


#: the options a task needs besides its defaults
REQUIRED_OPTIONS = {"neurogym": {"env": "PerceptualDecisionMaking-v0"}}


def test_registry_lists_every_task():
    assert TASKS.names() == sorted(["n_parity", "n_dms", "delayed_cue", "flip_flop",
                                    "delayed_addition", "evidence_accumulation", "neurogym"])


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
    task = make(name, dt=5e-3 if name == "delayed_cue" else 1e-3,
                **REQUIRED_OPTIONS.get(name, {}))
    level = task.largest_level()
    batch = task.sample(32, np.random.default_rng(3), level)
    outputs = np.random.default_rng(4).normal(size=batch.targets.shape)
    weighed = batch.mask.any(axis=(0, 2))
    zeroed = np.where(weighed[None, :, None], outputs, 0.0)
    np.testing.assert_array_equal(task.score(zeroed, batch, level),
                                  task.score(outputs, batch, level))


def paper_accuracy_and_reliability(pred, gt, start, end):
    """Transcription of the delayed-cue paper's ``calculate_accuracy`` (fatihdinc/
    dynamical-phases-stm, src/rnn.py), without its rounding to 4 decimals."""
    pred_prob = torch.nan_to_num(pred / torch.sum(pred, dim=-1)[..., None])
    target = torch.argmax(gt[:, start:end, :], dim=-1)
    accuracy = 1 - torch.nn.functional.l1_loss(
        torch.argmax(pred_prob[:, start:end, :], dim=-1).float(), target.float())
    reliability = torch.mean(torch.gather(pred_prob[:, start:end, :], -1,
                                          index=target[..., None]))
    return accuracy.item(), reliability.item()


@pytest.mark.parametrize("n_cues", [2, 3])
def test_delayed_cue_accuracy_and_reliability_are_the_papers(n_cues):
    """Reference: the paper's code on sigmoid outputs, some trials silent in the response
    window (0 / 0: NaN -> 0)."""
    task = make("delayed_cue", dt=5e-3, post="20 ms", n_cues=n_cues, random_cues=True)
    batch = task.sample(64, np.random.default_rng(5))
    outputs = 1 / (1 + np.exp(-3 * np.random.default_rng(6).normal(size=batch.targets.shape)))
    outputs[:5] = 0.0
    steps = task.periods()
    start = steps["cue"] + steps["delay"]
    accuracy, reliability = paper_accuracy_and_reliability(
        torch.as_tensor(outputs), torch.as_tensor(batch.targets), start,
        start + steps["response"])
    assert task.reliability(outputs, batch)[0] == pytest.approx(reliability, rel=1e-12)
    if n_cues == 2:  # the paper's accuracy is 1 - |class difference|: a fraction for 2
        assert task.score(outputs, batch)[0] == pytest.approx(accuracy, rel=1e-6)
    perfect = np.where(batch.targets > 0, 0.9, 0.0)
    assert task.reliability(perfect, batch)[0] == pytest.approx(1.0)


def test_bit_task_reliability_is_the_softmax_probability_of_the_label():
    """Reference: torch's softmax of each active head's logits at the last step."""
    task = make("n_parity", n=2, max_n=6)
    level = task.level_at(4)
    batch = task.sample(50, np.random.default_rng(7), level)
    outputs = np.random.default_rng(8).normal(size=batch.targets.shape)
    reliability = task.reliability(outputs, batch, level)
    assert reliability.shape == (task.n_heads,)
    for head, _ in level.heads:
        logits = torch.as_tensor(outputs[:, -1, 2 * head:2 * head + 2])
        label = torch.as_tensor(batch.conditions[f"label_head{head}"])
        expected = torch.softmax(logits, dim=-1).gather(-1, label[:, None]).mean()
        assert reliability[head] == pytest.approx(float(expected), rel=1e-12)
    assert np.isnan(reliability[len(level.heads):]).all()


@pytest.mark.parametrize("name", ["flip_flop", "delayed_addition", "evidence_accumulation"])
def test_tasks_without_classes_have_no_reliability(name):
    task = make(name)
    batch = task.sample(4, np.random.default_rng(0))
    assert np.isnan(task.reliability(batch.targets, batch)).all()
    assert task.reliability(batch.targets, batch).shape == (task.n_heads,)


def test_parity_drive_has_one_bit_rate_per_trial_and_dms_drive_has_rate_one_half():
    """The curriculum paper drives its networks for their timescales with the training
    statistics: N-parity bits at a rate p ~ U(0, 1) per trial (spread over (0, 1)),
    N-DMS at rate 1/2."""
    rng = np.random.default_rng(9)
    parity = make("n_parity", n=3).drive(rng, 200, 2000)
    dms = make("n_dms", n=3).drive(rng, 200, 2000)
    for inputs in (parity, dms):
        assert inputs.shape == (200, 2000, 1) and set(np.unique(inputs)) == {0.0, 1.0}
    rates = parity[..., 0].mean(axis=1)
    assert rates.min() < 0.1 and rates.max() > 0.9 and rates.std() > 0.25  # U(0, 1): 0.29
    assert np.histogram(rates, bins=5, range=(0, 1))[0].min() > 20  # all of (0, 1)
    np.testing.assert_allclose(dms[..., 0].mean(axis=1), 0.5, atol=0.06)


def test_the_default_drive_lays_the_tasks_trials_end_to_end():
    """Delayed cue (the paper's batch alternates the cues): every trial-long stretch of the
    drive is a trial, cues at random with frequency 1/2 whatever the row; the last one cut
    at ``steps``."""
    task = make("delayed_cue", dt=5e-3)
    length = task.max_steps()
    inputs = task.drive(np.random.default_rng(10), 3, 400 * length + 7)
    assert inputs.shape == (3, 400 * length + 7, 2)
    trials = inputs[:, :400 * length].reshape(3, 400, length, 2)
    reference = task.sample(2, np.random.default_rng(0)).inputs
    cues = trials[:, :, 0].argmax(axis=-1)  # (row, trial)
    for row in range(3):
        for k in range(400):
            np.testing.assert_array_equal(trials[row, k], reference[cues[row, k]])
    assert 0.4 < cues.mean() < 0.6 and cues[0].mean() > 0.35  # row 0: not always cue 0
    for cut in inputs[:, 400 * length:]:  # the first 7 steps of a trial
        assert any(np.array_equal(cut, trial[:7]) for trial in reference)


def test_the_default_drive_keeps_the_pulse_rate_of_flip_flop():
    task = make("flip_flop", n_bits=2, flip_probability=0.05)
    inputs = task.drive(np.random.default_rng(11), 4, 25000)
    assert inputs.shape == (4, 25000, 2)
    assert np.mean(inputs != 0) == pytest.approx(0.05, abs=0.005)
    assert np.mean(inputs[inputs != 0] > 0) == pytest.approx(0.5, abs=0.05)
