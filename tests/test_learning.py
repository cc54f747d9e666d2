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
