"""Shared helpers for the test suite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bioplast

SHIPPED_MODELS = ["leaky_rate", "leaky_current", "leaky_tau", "ei_rate", "phases_rnn", "timescale_rnn"]
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def random_inputs(model, n_trials: int, n_steps: int, seed: int = 0) -> np.ndarray:
    """i.i.d. N(0, 1) inputs shaped (trial, time, input)."""
    return np.random.default_rng(seed).normal(size=(n_trials, n_steps, model.n_inputs))


@pytest.fixture
def write_model(tmp_path):
    """Write YAML text to a model file and return its path."""
    def write(text: str, name: str = "model.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


LINEAR_MODEL = """\
name: linear
description: linear leaky network, tau dr/dt = -r + W_rec r + W_in u + b
equations: |
  dr/dt = (-r + I_rec + I_in + b) / tau : 1
  b : 1 (trainable)
  tau : second (constant, shared)
couplings:
  W_rec: {source: r, target: I_rec, init: {kind: scaled_normal, gain: 0.9}}
  W_in: {source: input, target: I_in}
readout: {source: r}
initial: {r: {kind: normal, std: 1}}
defaults: {n_units: 6, n_inputs: 2, n_outputs: 1, tau: 10 ms, dt: 1 ms}
"""


@pytest.fixture
def linear_model():
    return bioplast.load_model(LINEAR_MODEL)
