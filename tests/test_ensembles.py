"""Ensembles against their reference, the same networks trained one at a time: every member
of an ensemble gets the history and parameters it gets alone (float64, 1e-10), for BPTT,
e-prop and node perturbation, with members at different curriculum levels and stopping
early. The batched optimizer against torch.optim."""

import textwrap

import numpy as np
import pytest
import torch
import xarray as xr

from bioplast import cli
from bioplast.ensembles import check_ensemble
from bioplast.errors import InputError
from bioplast.optimizers import MemberOptimizer
from bioplast.protocol import load_protocol
from bioplast.rules.base import OptimizerConfig
from bioplast.training import Trainer, train

HISTORY = ("loss", "grad_norm", "eval_loss", "level")

# a multi-head parity curriculum with an easy threshold: members level up at different
# epochs (batches of different levels and lengths in one update) and stop at max_n
PARITY = """\
name: ensemble_parity
seed: 5
model: {file: leaky_tau, n_units: 12, sigma: 0.05}  # noise: one stream per member
task: {name: n_parity, n: 1, curriculum: multi_head, max_n: 3, threshold: 0.6}
rule: RULE
training: {epochs: 7, steps_per_epoch: 6, batch_size: 16, eval_batches: 1,
           alignment_every: 3}
backend: {name: torch, dtype: float64}
record: {trials: 3}
"""

RULES = {
    "bptt": "{name: bptt, optimizer: {name: sgd, lr: 0.5, momentum: 0.3, nesterov: true}, "
            "grad_clip: 2.0}",
    "eprop": "{name: eprop, optimizer: {name: adam, lr: 0.05}}",
    "node_perturbation": "{name: node_perturbation, sigma: 0.05, "
                         "optimizer: {name: sgd, lr: 0.5}}",
}


def protocol_text(rule):
    return PARITY.replace("RULE", RULES[rule])


def member_settings(rule):
    """Three members differing in seed, learning rate and W_rec's initial scale."""
    lr = {"bptt": [0.5, 0.2, 1.0], "eprop": [0.05, 0.02, 0.1],
          "node_perturbation": [0.5, 0.2, 1.0]}[rule]
    return [{"seed": 5 + m, "rule.optimizer.lr": lr[m],
             "model.couplings.W_rec.init": {"kind": "uniform", "low": -0.3 - 0.1 * m,
                                            "high": 0.3 + 0.1 * m}} for m in range(3)]


def assert_same_network(solo, member, parameters):
    for name in HISTORY:
        np.testing.assert_allclose(member.history.__dict__[name], solo.history.__dict__[name],
                                   rtol=1e-10, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(member.history.accuracy_array(), solo.history.accuracy_array(),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(member.history.per_parameter("alignment"),
                               solo.history.per_parameter("alignment"), rtol=1e-8, atol=1e-10)
    for name in parameters:
        np.testing.assert_allclose(member.params[name], solo.params[name], rtol=1e-10,
                                   atol=1e-10, err_msg=name)
    assert member.status == solo.status and member.message == solo.message


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_member_trains_as_it_would_alone(tmp_path, rule):
    path = tmp_path / "p.yaml"
    path.write_text(protocol_text(rule))
    protocols = [load_protocol(path, settings) for settings in member_settings(rule)]
    ensemble = train(protocols)
    solos = [train(load_protocol(path, settings)) for settings in member_settings(rule)]
    parameters = list(protocols[0].model.params)
    for solo, member in zip(solos, ensemble.members):
        assert_same_network(solo.members[0], member, parameters)
    epochs = [len(m.history) for m in ensemble.members]
    levels = np.array([m.history.level[:min(epochs)] for m in ensemble.members])
    # the test means something: members stopped early, at different epochs or levels
    assert min(epochs) < 7 or len(set(epochs)) > 1
    assert (levels != levels[0]).any() or len(set(epochs)) > 1


@pytest.mark.parametrize("rule", sorted(RULES))
def test_members_with_their_own_regularizer_weights(tmp_path, rule):
    """Temporal-consistency and weight-L2 weights differ between members (reference: the
    same networks alone)."""
    path = tmp_path / "p.yaml"
    path.write_text(protocol_text(rule).replace(
        "training:", "regularizers: [{name: temporal_consistency, weight: 0.1}, "
                     "{name: weight_l2, weight: 0.001}]\ntraining:"))
    # a learning rate at which node perturbation does not blow up (rounding differences
    # of 1e-16 grow with the weights of a diverging run)
    lr = {"bptt": 0.5, "eprop": 0.05, "node_perturbation": 0.05}[rule]
    settings = [{"seed": 5 + m, "rule.optimizer.lr": lr, "regularizers": [
        {"name": "temporal_consistency", "weight": [0.0, 0.1, 1.0][m]},
        {"name": "weight_l2", "weight": 0.001 * m}]} for m in range(3)]
    ensemble = train([load_protocol(path, one) for one in settings])
    parameters = list(ensemble.protocol.model.params)
    for one, member in zip(settings, ensemble.members):
        assert_same_network(train(load_protocol(path, one)).members[0], member, parameters)


def test_members_setting_and_result_dataset(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(protocol_text("bptt").replace("alignment_every: 3", "members: 3"))
    out = tmp_path / "ensemble.nc"
    assert cli.main(["run", str(path), "-o", str(out), "--quiet"]) == 0
    ds = xr.load_dataset(out)
    assert ds.sizes["member"] == 3 and list(ds["seed"].values) == [5, 6, 7]
    assert ds["W_rec"].dims == ("member", "unit", "presynaptic")
    assert ds["loss"].dims == ("member", "epoch") and ds["outputs"].dims[0] == "member"
    single = train(load_protocol(path, {"seed": 6, "training.members": 1}))
    np.testing.assert_allclose(ds["W_rec"].sel(member=1).values, single.params["W_rec"],
                               rtol=1e-10, atol=1e-12)
    epochs = int(ds["network_epochs_completed"].sel(member=1))
    np.testing.assert_allclose(ds["loss"].sel(member=1).values[:epochs], single.history.loss,
                               rtol=1e-10)
    assert set(ds["network_status"].values) == {"complete"}
    assert list(ds["network_seed"].values) == ["5", "6", "7"]
    assert cli.main(["plot", str(out), "-o", str(tmp_path / "e.png"), "--quiet"]) == 0


def test_resume_an_ensemble_gives_the_same_result(tmp_path, monkeypatch):
    """Reference: the uninterrupted run. Ctrl-C during epoch 3, then --resume."""
    path = tmp_path / "p.yaml"
    path.write_text(protocol_text("eprop").replace("alignment_every: 3",
                                                   "members: 2, checkpoint_every: 1"))
    whole = train(load_protocol(path))
    evaluate = Trainer.evaluate

    def interrupt_at_epoch_3(self, members):
        if self.next_epoch == 3:
            raise KeyboardInterrupt
        return evaluate(self, members)
    monkeypatch.setattr(Trainer, "evaluate", interrupt_at_epoch_3)
    checkpoint = tmp_path / "c.pt"
    assert train(load_protocol(path), checkpoint=checkpoint).status == "interrupted"
    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    resumed = train(load_protocol(path), checkpoint=checkpoint, resume=True)
    assert resumed.info["resumed_from_epoch"] == 3
    for a, b in zip(whole.members, resumed.members):
        np.testing.assert_array_equal(a.params["W_rec"], b.params["W_rec"])
        np.testing.assert_array_equal(a.history.loss, b.history.loss)


def test_members_that_differ_in_more_than_hyperparameters_are_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(protocol_text("bptt"))
    protocols = [load_protocol(path), load_protocol(path, {"task.max_n": 4})]
    with pytest.raises(InputError, match="may differ only in"):
        check_ensemble(protocols)
    with pytest.raises(InputError, match="members"):
        check_ensemble([load_protocol(path), load_protocol(path, {"rule.optimizer.name":
                                                                  "adam",
                                                                  "rule.optimizer.momentum": 0.0,
                                                                  "rule.optimizer.nesterov":
                                                                  False})])


def test_brian2_protocols_cannot_have_members(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent("""\
        name: np_brian2
        model: {file: leaky_rate, n_units: 4}
        task: {name: delayed_cue, delay: 10 ms}
        rule: {name: node_perturbation}
        training: {members: 2}
        backend: {name: brian2}
        """))
    assert cli.main(["run", str(path), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert "training.members" in err and "torch backend" in err


@pytest.mark.parametrize("configs", [
    [OptimizerConfig(name="sgd", lr=0.05, momentum=0.1, nesterov=True, weight_decay=0.01),
     OptimizerConfig(name="sgd", lr=0.02, momentum=0.9, nesterov=True)],
    [OptimizerConfig(name="sgd", lr=0.1), OptimizerConfig(name="sgd", lr=0.1, momentum=0.5)],
    [OptimizerConfig(name="adam", lr=3e-3),
     OptimizerConfig(name="adam", lr=1e-2, betas=[0.8, 0.99], weight_decay=0.1)],
])
def test_member_optimizer_equals_torch_optim(configs):
    """Reference: torch.optim.SGD / Adam with torch.nn.utils-style clipping, one network
    at a time; the second member stops (inactive) after five steps."""
    generator = torch.Generator().manual_seed(0)
    start = {"W": torch.randn(2, 4, 4, generator=generator, dtype=torch.float64),
             "b": torch.randn(2, 4, generator=generator, dtype=torch.float64)}
    clips = [1.0, None]
    ensemble = {k: v.clone() for k, v in start.items()}
    optimizer = MemberOptimizer(configs, clips, ensemble)
    singles = []
    for m, config in enumerate(configs):
        params = [start[k][m].clone() for k in ("W", "b")]
        kind = torch.optim.SGD if config.name == "sgd" else torch.optim.Adam
        options = dict(lr=config.lr, weight_decay=config.weight_decay)
        options.update(dict(momentum=config.momentum, nesterov=config.nesterov)
                       if config.name == "sgd" else dict(betas=tuple(config.betas)))
        singles.append((params, kind(params, **options)))
    for step in range(12):
        gradients = {k: 3 * torch.randn(v.shape, generator=generator, dtype=torch.float64)
                     for k, v in start.items()}
        if step % 3 == 1:  # a parameter without a gradient is skipped, its steps not counted
            del gradients["b"]
        active = torch.tensor([True, step < 5])
        optimizer.step(ensemble, gradients, active)
        for m, (params, reference) in enumerate(singles):
            if not active[m]:
                continue
            grads = [gradients[k][m] if k in gradients else None for k in ("W", "b")]
            norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None)))
            scale = min(1.0, clips[m] / (norm + 1e-6)) if clips[m] else 1.0
            for param, grad in zip(params, grads):
                param.grad = None if grad is None else grad * scale
            reference.step()
    for m, (params, _) in enumerate(singles):
        for k, param in zip(("W", "b"), params):
            torch.testing.assert_close(ensemble[k][m], param, rtol=1e-12, atol=1e-14)
