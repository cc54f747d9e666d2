"""CUDA against the CPU: the torch backend and training give the CPU's numbers on a GPU.

Skipped where ``torch.cuda.is_available()`` is false (``benchmarks/gpu_check.sh`` runs this
file on a machine with CUDA). Reference everywhere: the same computation on the CPU, float64,
noise off. Random numbers drawn by torch (model noise, node perturbation's perturbations)
come from a generator on the run's device, and CUDA's generator gives other numbers than
the CPU's: with noise on, CPU and CUDA runs are equally valid but not equal, so every
comparison here turns noise off. Batches, initial states and parameters are drawn with
numpy and are the same on both devices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import bioplast
from bioplast.backends import get_backend
from bioplast.training import train
from conftest import MODELS_DIR, random_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available())")

REPO = Path(__file__).resolve().parent.parent
MODEL_FILES = sorted(MODELS_DIR.glob("*.yaml"))


def max_relative_difference(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def test_every_shipped_model_is_covered():
    """The models/ directory is where the shipped models live (reference: the list the
    rest of the suite uses)."""
    from conftest import SHIPPED_MODELS
    assert {path.stem for path in MODEL_FILES} >= set(SHIPPED_MODELS)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda path: path.stem)
def test_cuda_simulation_equals_cpu_float64(path):
    """`bioplast.simulate` on CUDA, float64, noise off: every recordable variable and the
    outputs within 1e-10 (relative to the largest value) of the CPU's, 8 trials x 200 steps
    (an input-driven network: rounding differences are not amplified, measured ~1e-15 on
    the CPU for perturbations of the bias)."""
    model = bioplast.load_model(path)
    params = model.init_params(seed=1)
    if "b" in params:  # a non-zero bias, so every term of the equations matters
        params["b"] = np.random.default_rng(2).normal(0, 0.3, size=params["b"].shape)
    inputs = random_inputs(model, n_trials=8, n_steps=200, seed=3)
    record = list(model.recordable)
    initial = model.initial_state(8, seed=4)
    cpu = bioplast.simulate(model, params, inputs, "torch", record=record, noise=False,
                            initial_state=initial, dtype="float64")
    gpu = bioplast.simulate(model, params, inputs, "torch", record=record, noise=False,
                            initial_state=initial, dtype="float64", device="cuda")
    assert "cuda" in gpu.attrs.get("backend_options", ""), gpu.attrs.get("backend_options")
    for name in [*record, "outputs"]:
        assert gpu[name].shape == cpu[name].shape, name
        assert max_relative_difference(gpu[name].values, cpu[name].values) <= 1e-10, name
    state = model.state_names[0]
    assert np.std(cpu[state].values[:, -1]) > 1e-3  # the activity is not trivial


def test_cuda_members_and_gradients_equal_cpu_float64():
    """The torch backend on CUDA with a member axis (3 networks) and parameters that
    require grad: trajectories live on the GPU, and the outputs and the BPTT gradient of a
    loss of them equal the CPU's to 1e-10 (float64)."""
    model = bioplast.load_model("leaky_tau", n_units=48)
    members = [model.init_params(seed) for seed in range(3)]
    stacked = {k: np.stack([p[k] for p in members]) for k in members[0]}
    inputs = random_inputs(model, 6, 80, seed=5)
    initial = {k: np.broadcast_to(v, (3, *v.shape)).copy() for k, v in
               model.initial_state(6, seed=6).items()}
    results = {}
    for device in ("cpu", "cuda"):
        backend = get_backend("torch", device=device, dtype="float64")
        leaves = {k: torch.tensor(v, dtype=torch.float64, device=device,
                                  requires_grad=model.params[k].trainable)
                  for k, v in stacked.items()}
        trajectory = backend.simulate(model, leaves, inputs, initial, ["r"], noise=False)
        assert trajectory.outputs.device.type == device
        loss = (trajectory.outputs ** 2).mean() + trajectory.recorded["r"].abs().mean()
        trained = [k for k in leaves if leaves[k].requires_grad]
        grads = torch.autograd.grad(loss, [leaves[k] for k in trained])
        results[device] = {"outputs": trajectory.outputs.detach().cpu().numpy(),
                           **{k: g.cpu().numpy() for k, g in zip(trained, grads)}}
    for name, value in results["cpu"].items():
        assert max_relative_difference(results["cuda"][name], value) <= 1e-10, name


ENSEMBLES = {
    "delayed_cue_bptt_sgd": ("protocols/papers/phases.yaml", {
        "model.n_units": 24, "task.delay": "50 ms", "training.batch_size": 16,
        "training.epochs": 3, "training.steps_per_epoch": 3, "training.members": 3,
        "training.alignment_every": None}),
    "nparity_multi_head_bptt_clip": ("protocols/nparity_multi_head.yaml", {
        "model.n_units": 24, "task.max_n": 5, "task.threshold": 0.55,
        "training.batch_size": 16, "training.epochs": 4, "training.steps_per_epoch": 4,
        "training.eval_batches": 2, "training.members": 3,
        "rule.optimizer": {"name": "adam", "lr": 0.01}}),
    "flip_flop_eprop": ("protocols/flip_flop_eprop.yaml", {
        "model.n_units": 16, "task.duration": "40 ms", "training.batch_size": 8,
        "training.epochs": 3, "training.steps_per_epoch": 2, "training.members": 2,
        "training.alignment_every": 2}),
}


@pytest.mark.parametrize("name", list(ENSEMBLES))
def test_cuda_ensemble_training_equals_cpu_float64(name):
    """A small ensemble trained on CUDA (float64, noise off) has the CPU's history (loss,
    gradient norm, test loss, accuracy per head, curriculum level) and learned parameters
    within 1e-8 relative: BPTT with SGD + momentum (delayed cue), BPTT with Adam, clipping
    and a multi-head curriculum whose level may rise (N-parity), e-prop with symmetric
    feedback and alignment checks (flip-flop). Reference: the same protocol on the CPU."""
    path, settings = ENSEMBLES[name]
    path = REPO / path
    common = {**settings, "backend.dtype": "float64", "training.noise": False,
              "record.trials": 2}
    cpu = train(bioplast.load_protocol(path, common))
    gpu = train(bioplast.load_protocol(path, {**common, "backend.device": "cuda"}))
    assert cpu.status == gpu.status
    for mine, reference in zip(gpu.members, cpu.members):
        assert mine.status == reference.status
        for field in ("loss", "grad_norm", "eval_loss", "level"):
            np.testing.assert_allclose(getattr(mine.history, field),
                                       getattr(reference.history, field), rtol=1e-8,
                                       atol=0, err_msg=field)
        np.testing.assert_allclose(mine.history.accuracy_array(),
                                   reference.history.accuracy_array(), rtol=1e-8, atol=0)
        if any(np.isfinite(np.asarray(reference.history.alignment, dtype=float)).ravel()):
            np.testing.assert_allclose(np.asarray(mine.history.alignment, dtype=float),
                                       np.asarray(reference.history.alignment, dtype=float),
                                       rtol=1e-8, atol=1e-12)
        for key, value in reference.params.items():
            assert max_relative_difference(mine.params[key], value) <= 1e-8, key
        if reference.test is not None:
            assert max_relative_difference(mine.test.outputs, reference.test.outputs) <= 1e-8
    assert np.any(np.diff(cpu.history.loss) != 0)  # training moved the networks


def test_cuda_node_perturbation_trains():
    """Node perturbation on CUDA (its perturbations come from CUDA's generator, so the
    numbers differ from the CPU's): a small ensemble runs, stays finite and its parameters
    change. Reference: the initial parameters of the same protocol."""
    path = REPO / "protocols" / "delayed_cue_node_perturbation.yaml"
    protocol = bioplast.load_protocol(path, {
        "model.n_units": 16, "training.batch_size": 16, "training.epochs": 2,
        "training.steps_per_epoch": 3, "training.members": 2, "backend.device": "cuda",
        "record.trials": 2})
    result = train(protocol)
    assert result.status == "complete"
    for member in result.members:
        assert np.all(np.isfinite(member.history.loss))
        start = protocol.model.init_params(member.protocol.seed)
        assert max_relative_difference(member.params["W_rec"], start["W_rec"]) > 0
