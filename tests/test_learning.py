"""Learning outcomes and scaling fits against constructed references: accuracy histories
of known outcome, the onset curve with a known T0, and a power law with a known exponent."""

import numpy as np
import pytest

from bioplast.analysis.learning import (LEARNED, NOT_LEARNED, UNSTABLE, critical_delay,
                                        drop_epoch, null_loss,
                                        learning_outcome, power_law)


def test_learning_outcomes():
    rising = np.concatenate([np.full(50, 0.5), np.full(50, 0.95)])
    assert learning_outcome(rising) == LEARNED
    assert learning_outcome(np.full(100, 0.6)) == NOT_LEARNED
    flickering = rising.copy()
    flickering[60:90:3] = 0.4  # a fifth of the epochs after learning fall below 0.6
    assert learning_outcome(flickering) == UNSTABLE
    assert learning_outcome(np.concatenate([rising, np.full(20, np.nan)])) == LEARNED


def paper_class(acc, rel):
    """Transcription of the delayed-cue paper's classification (fatihdinc/
    dynamical-phases-stm, Experiments/rnn-large-nopost/narrow/sort_data.py,
    train_rnn_model): 0 no learning, 3 unstable learning, else learned (1 or 2, its
    mechanism)."""
    ind = np.where(((acc > 0.8) & (rel > 0.8)))[0]
    if len(ind) == 0:
        num = 1
    else:
        start = ind[0]
        num = ((np.sum(acc[start:] < 0.6) + np.sum(rel[start:] < 0.6)) /
               (np.sum(acc[start:] > 0.6) + np.sum(rel[start:] > 0.6))) < 0.1
    start = int(acc.shape[0] * 0.9)
    acc = np.mean(acc[start:]) > 0.8
    rel = np.mean(rel[start:]) > 0.8
    learned = acc * rel * num
    if learned == 0:
        return 0 if num == 1 else 3
    return 1


PAPER = {0: NOT_LEARNED, 3: UNSTABLE, 1: LEARNED}


def random_histories(rng, count):
    """Accuracy and reliability per epoch of many kinds: noisy learning curves with dips,
    plateaus near the thresholds, values exactly at them, short and long runs."""
    for _ in range(count):
        n = int(rng.choice([1, 2, 5, 9, 10, 11, 37, 100, 3000]))
        kind = rng.integers(4)
        if kind == 0:  # uniform noise
            acc, rel = rng.uniform(size=n), rng.uniform(size=n)
        elif kind == 1:  # a learning curve with random dips
            onset = rng.integers(n + 1)
            acc = np.where(np.arange(n) < onset, 0.5, rng.uniform(0.75, 1.0))
            rel = np.clip(acc + rng.normal(0, 0.05, n), 0, 1)
            dips = rng.uniform(size=n) < rng.uniform(0, 0.2)
            acc[dips] = rng.uniform(0, 0.6, dips.sum())
        elif kind == 2:  # on the grid of the thresholds
            acc = rng.choice([0.5, 0.6, 0.8, 0.81, 1.0], size=n)
            rel = rng.choice([0.5, 0.6, 0.8, 0.81, 1.0], size=n)
        else:  # accuracy and reliability above 0.8 in alternation, never together
            acc = np.where(np.arange(n) % 2, 1.0, 0.7)
            rel = np.where(np.arange(n) % 2, 0.7, 1.0)
        yield acc, rel


def test_learning_outcome_with_reliability_is_the_papers_rule():
    """Reference: the transcription of the authors' code above, on 3000 random histories
    covering every outcome (and NaN epochs, which bioplast leaves out first)."""
    rng = np.random.default_rng(0)
    seen = set()
    for acc, rel in random_histories(rng, 3000):
        expected = PAPER[paper_class(acc, rel)]
        assert learning_outcome(acc, rel) == expected, (acc, rel)
        seen.add(expected)
        padded = np.concatenate([acc, [np.nan, 0.9]]), np.concatenate([rel, [0.9, np.nan]])
        assert learning_outcome(*padded) == expected
    assert seen == {LEARNED, NOT_LEARNED, UNSTABLE}


def test_learning_outcome_with_reliability_on_constructed_histories():
    rising = np.concatenate([np.full(50, 0.5), np.full(50, 0.95)])
    assert learning_outcome(rising, rising) == LEARNED
    assert learning_outcome(rising, np.full(100, 0.7)) == NOT_LEARNED  # never reliable
    unreliable = rising.copy()
    unreliable[60:90:3] = 0.4  # reliability dips in a fifth of the epochs after learning
    assert learning_outcome(rising, unreliable) == UNSTABLE
    assert learning_outcome(unreliable, rising) == UNSTABLE
    late = np.concatenate([np.full(95, 0.5), np.full(5, 0.95)])  # the last 10% half above
    assert learning_outcome(late, late) == NOT_LEARNED
    # above 0.8 in turn, never together: the paper's code still counts it learned
    alternating = np.where(np.arange(100) % 2, 1.0, 0.7)
    assert learning_outcome(alternating, 1.7 - alternating) == LEARNED
    assert learning_outcome(np.full(3, np.nan), np.full(3, np.nan)) == NOT_LEARNED


def test_critical_delay_recovers_the_onset():
    delays = np.linspace(0, 0.4, 21)
    fraction = np.where(delays < 0.15, 0.0, 1 - np.exp(-25 * (delays - 0.15)))
    assert critical_delay(delays, fraction) == pytest.approx(0.15, abs=0.01)
    assert np.isnan(critical_delay(delays, np.zeros_like(delays)))
    assert critical_delay(delays, np.ones_like(delays)) == 0.0


def test_power_law_exponent_and_interval():
    rng = np.random.default_rng(0)
    x = np.logspace(-2, -0.5, 12)
    y = 0.01 * x ** -2.72 * np.exp(0.05 * rng.normal(size=x.size))
    fit = power_law(x, y)
    assert fit.low < -2.72 < fit.high and fit.beta == pytest.approx(-2.72, abs=0.1)
    assert fit.r2 > 0.99 and fit.n == 12
    assert np.isnan(power_law(x[:2], y[:2]).beta)


def test_drop_epoch_and_null_loss():
    loss = np.concatenate([np.full(30, 0.8), [0.5, 0.05], np.full(10, 0.01)])
    assert drop_epoch(loss, reference=1.0) == 31  # first epoch below 0.1 x reference
    assert drop_epoch(loss, reference=1.0, fraction=0.6) == 30
    assert np.isnan(drop_epoch(np.full(10, 0.5), reference=1.0))
    # flip-flop, MSE over every step and bit: a zero output scores the mean squared target,
    # 1 wherever a bit has been set (targets are +-1 after the first pulse, 0 before)
    from bioplast.tasks import TASKS
    flip_flop = TASKS.get("flip_flop")
    task = flip_flop(flip_flop.Config(n_bits=3, duration="100 ms", flip_probability=0.05),
                     1e-3)
    batch = task.sample(256, np.random.default_rng(0), task.initial_level())
    expected = np.sum(batch.mask * batch.targets ** 2) / np.sum(batch.mask)
    assert null_loss(task, batch_size=256, seed=0) == pytest.approx(expected, rel=1e-12)
