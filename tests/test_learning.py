"""Learning outcomes and scaling fits against constructed references: accuracy histories
of known outcome, the onset curve with a known T0, and a power law with a known exponent."""

import numpy as np
import pytest

from bioplast.analysis.learning import (LEARNED, NOT_LEARNED, UNSTABLE, critical_delay,
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
