"""`bioplast compare-rules` end to end on a tiny protocol, its alignment against a cosine
computed by hand from a rule's update and the BPTT gradient, and the protocol's
``rule_options`` and switched rules (against the rules' documented defaults)."""

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from bioplast import cli
from bioplast.protocol import load_protocol
from bioplast.rules import true_gradient
from bioplast.training import loop

RULES = ["bptt", "eprop", "rflo", "node_perturbation"]
PROTOCOL = """\
name: rules_small
seed: 0
model: {file: leaky_rate, n_units: 8}
task: {name: delayed_cue, delay: 20 ms}
rule: {name: eprop, feedback: symmetric, optimizer: {name: adam, lr: 0.01}}
rule_options:
  node_perturbation: {sigma: 0.05}
training: {epochs: 3, steps_per_epoch: 2, batch_size: 8, eval_batches: 1, alignment_every: 2}
backend: {name: torch, dtype: float64}
record: {trials: 2}
"""


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """The comparison of `RULES` over 2 seeds, run once through the command line."""
    directory = tmp_path_factory.mktemp("rules")
    path = directory / "p.yaml"
    path.write_text(PROTOCOL)
    output = directory / "rules.nc"
    code = cli.main(["compare-rules", str(path), "--rules", ",".join(RULES), "--seeds", "2",
                     "--workers", "2", "-o", str(output), "--quiet"])
    assert code == 0
    return path, output, xr.load_dataset(output)


def test_the_comparison_has_rule_and_seed_dims_and_a_figure(comparison):
    path, output, dataset = comparison
    assert dataset["loss"].dims == ("rule", "seed", "epoch")
    assert list(dataset["rule"].values) == RULES
    assert dataset["rule"].attrs["key"] == "rule.name"
    assert list(dataset["seed"].values) == [0, 1]
    assert dataset["alignment"].dims == ("rule", "seed", "epoch")
    assert dataset["final_accuracy"].dims == ("rule", "seed")
    assert dataset["time_per_update"].dims == ("rule",)
    assert dataset["time_per_update"].attrs["units"] == "second"
    assert (dataset["time_per_update"].values > 0).all()
    assert dataset.attrs["kind"] == "sweep"
    # every point trained under its own rule
    assert (dataset["network_rule"].values == dataset["rule"].values[:, None]).all()
    assert (dataset["network_status"].values == "complete").all()
    # one head, every epoch run: the final accuracy is the last epoch's
    np.testing.assert_array_equal(dataset["final_accuracy"].values,
                                  dataset["accuracy"].values[:, :, -1, 0])
    figure = output.with_suffix(".png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_rule_takes_its_defaults_or_its_rule_options(comparison):
    """Switched away from the protocol's e-prop, each rule keeps the shared optimizer and
    takes its own defaults (RFLO: random feedback, online updates, as `RFLOConfig`
    declares) or the protocol's ``rule_options`` (node perturbation's sigma)."""
    _, _, dataset = comparison
    rules = {str(rule): yaml.safe_load(str(text))["rule"] for rule, text in
             zip(dataset["rule"].values, dataset["network_protocol"].values[:, 0])}
    assert rules["bptt"] == {"name": "bptt", "optimizer": {"name": "adam", "lr": 0.01}}
    assert rules["eprop"]["feedback"] == "symmetric"
    assert "feedback" not in rules["rflo"]  # its defaults, not e-prop's symmetric feedback
    assert rules["node_perturbation"]["sigma"] == 0.05
    for rule in rules.values():
        assert rule["optimizer"] == {"name": "adam", "lr": 0.01}
    assert not any("rule_options" in yaml.safe_load(str(text))
                   for text in dataset["network_protocol"].values.ravel())


def test_bptt_is_aligned_with_itself(comparison):
    """BPTT's update is the BPTT gradient: cosine 1 to rounding (float64), at the epochs
    compared (every 2nd) and NaN at the others."""
    _, _, dataset = comparison
    alignment = dataset["alignment"].sel(rule="bptt").values  # (seed, epoch)
    np.testing.assert_allclose(alignment[:, [0, 2]], 1.0, atol=1e-12)
    assert np.isnan(alignment[:, 1]).all()


@pytest.mark.parametrize("rule", ["eprop", "rflo", "node_perturbation"])
def test_alignment_is_the_cosine_of_the_update_and_the_bptt_gradient(comparison, rule):
    """At epoch 0 (the initial parameters), the recorded alignment equals the cosine
    computed here by hand: the rule's estimate and the autograd gradient on the batch and
    noise the training loop compares on (its stream 7 for the batch, 8 for the noise),
    over the parameters the rule updates, concatenated."""
    path, _, dataset = comparison
    protocol = load_protocol(path, {"rule.name": rule, "seed": 1})
    trainer = loop.Trainer([protocol])
    member = trainer.members[0]
    rng = np.random.default_rng(loop._seed(1, 7, 0))
    level = member.curriculum.level()
    batch, initial = member.draw(rng, protocol.training.batch_size, level)
    _, level, batch, initial = next(trainer.groups([0], {0: (level, batch, initial)}))

    def context():
        return trainer.context([0], [member.generator_for(8, 0)])
    with torch.no_grad():
        update, _ = trainer.rule.estimate(context(), trainer.params, batch, initial, level,
                                          dict(trainer.rule_state))
    _, gradient = true_gradient(context(), trainer.params, batch, initial, level)
    names = sorted(update)
    assert rule != "node_perturbation" or "b" not in names  # it does not update the bias
    a = np.concatenate([update[name].numpy().ravel() for name in names])
    b = np.concatenate([gradient[name].numpy().ravel() for name in names])
    by_hand = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    recorded = float(dataset["alignment"].sel(rule=rule, seed=1, epoch=0))
    assert abs(by_hand) < 0.999  # an estimate, not the gradient: the check can fail
    np.testing.assert_allclose(recorded, by_hand, rtol=1e-9)


def test_an_unknown_rule_is_named(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL)
    code = cli.main(["compare-rules", str(path), "--rules", "bptt,backprop", "-o",
                     str(tmp_path / "r.nc")])
    err = capsys.readouterr().err
    assert code == 2 and "--rules" in err and "unknown rule 'backprop'" in err
    assert not (tmp_path / "r.nc").exists()


@pytest.mark.parametrize("options, where, message", [
    ("rule_options: {eprop: {feedbak: random}}", "rule_options.eprop.feedbak",
     "unknown key 'feedbak'"),
    ("rule_options: {backprop: {}}", "rule_options.backprop", "unknown rule 'backprop'"),
    ("rule_options: {eprop: {feedback: sideways}}", "rule_options.eprop.feedback",
     "'symmetric' or 'random'"),
    ("rule_options: {eprop: {name: rflo}}", "rule_options.eprop.name", "its key"),
    ("rule_options: [eprop]", "rule_options", "mapping"),
])
def test_bad_rule_options_are_named(tmp_path, capsys, options, where, message):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.replace("rule_options:\n  node_perturbation: {sigma: 0.05}",
                                     options))
    code = cli.main(["compare-rules", str(path), "--rules", "bptt,eprop", "-o",
                     str(tmp_path / "r.nc")])
    err = capsys.readouterr().err
    assert code == 2 and f"p.yaml:6: {where}:" in err and message in err, err


def test_a_switched_rule_keeps_the_shared_options_and_explicit_settings(tmp_path):
    """``--set rule.name=...`` on a protocol holding e-prop's options: the optimizer stays,
    e-prop's own options go, ``rule_options`` of the chosen rule apply, and ``--set``
    options of the chosen rule win over them; the effective text has no ``rule_options``
    and loads back to the same rule."""
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL)
    rflo = load_protocol(path, {"rule.name": "rflo"}).rule.config
    assert (rflo.feedback, rflo.update, rflo.optimizer.lr) == ("random", "online", 0.01)
    chosen = load_protocol(path, {"rule.name": "node_perturbation", "rule.sigma": 0.2})
    assert chosen.rule.config.sigma == 0.2
    assert load_protocol(path, {"rule.name": "node_perturbation"}).rule.config.sigma == 0.05
    assert "rule_options" not in yaml.safe_load(chosen.text)
    again = load_protocol(chosen.text, name="stored")
    assert again.rule.config == chosen.rule.config
    same = load_protocol(path, {"rule.name": "eprop"}).rule.config
    assert same.feedback == "symmetric"  # not switched: the protocol's own options
