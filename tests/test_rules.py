"""Learning rules and regularizers against their references: autograd with the recurrent
path detached (e-prop), the exact gradient (node perturbation on average), a direct numpy
computation and finite differences (temporal consistency)."""

import copy

import numpy as np
import pytest
import torch

import bioplast
from bioplast.compile_torch import TorchStepper
from bioplast.regularizers import REGULARIZERS
from bioplast.rules import RULES, TrainingContext, forward, true_gradient
from bioplast.tasks import TASKS
from conftest import SHIPPED_MODELS


def setup(model_name, n_units=6, task="flip_flop", seed=0, regularizers=(), **task_config):
    model = bioplast.load_model(model_name, n_units=n_units)
    task_class = TASKS.get(task)
    defaults = {"flip_flop": {"n_bits": 2, "duration": f"{15 * model.dt * 1e3:g} ms",
                              "flip_probability": 0.2},
                "delayed_cue": {"delay": "20 ms"}}[task]
    task_object = task_class(task_class.Config(**{**defaults, **task_config}), model.dt)
    model = bioplast.load_model(model, n_inputs=task_object.n_inputs,
                                n_outputs=task_object.n_outputs)
    params = {k: torch.as_tensor(v[None]) for k, v in model.init_params(seed).items()}
    bias = "b" if "b" in params else "b_rec"  # the paper-exact models: b_in + b_rec
    params[bias] = params[bias] + torch.as_tensor(
        np.random.default_rng(seed + 1).normal(0, 0.3, size=(1, model.n_units)))
    stepper = TorchStepper(model, torch.float64, "cpu", noise=False)
    context = TrainingContext(model, task_object, stepper, torch.Generator().manual_seed(seed),
                              list(regularizers))
    batch = task_object.sample(4, np.random.default_rng(seed + 2))
    initial = model.initial_state(4, seed=seed + 3)
    return context, params, batch, initial, task_object.initial_level()


def rule(name, **config):
    cls = RULES.get(name)
    return cls(cls.Config(**config))


def estimate(name, context, params, batch, initial, level, **config):
    instance = rule(name, **config)
    state = instance.init_state(context, params)
    with torch.no_grad():
        return instance.estimate(context, params, batch, initial, level, state)[0]


def assert_gradients_close(a, b, rtol):
    assert set(a) == set(b)
    for name in a:
        scale = float(b[name].abs().max())
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=rtol,
                                   atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_eprop_equals_autograd_with_the_recurrent_path_detached(model_name):
    context, params, batch, initial, level = setup(model_name)
    eprop = estimate("eprop", context, params, batch, initial, level)
    _, reference = true_gradient(context, params, batch, initial, level, detach_recurrent=True)
    assert_gradients_close(eprop, reference, rtol=1e-8)
    _, bptt = true_gradient(context, params, batch, initial, level)
    assert not np.allclose(eprop["W_rec"].numpy(), bptt["W_rec"].numpy())  # it is not BPTT


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_eprop_equals_bptt_without_recurrent_weights(model_name):
    context, params, batch, initial, level = setup(model_name)
    params["W_rec"] = torch.zeros_like(params["W_rec"])
    eprop = estimate("eprop", context, params, batch, initial, level)
    _, bptt = true_gradient(context, params, batch, initial, level)
    eprop.pop("W_rec"), bptt.pop("W_rec")  # with W = 0 there is no recurrent credit at all
    assert_gradients_close(eprop, bptt, rtol=1e-8)


def test_random_feedback_uses_a_fixed_random_matrix():
    context, params, batch, initial, level = setup("leaky_rate")
    instance = rule("eprop", feedback="random")
    state = instance.init_state(context, params)
    assert state["feedback"].shape == params["W_out"].shape
    with torch.no_grad():
        random_estimate = instance.estimate(context, params, batch, initial, level, state)[0]
    symmetric = estimate("eprop", context, params, batch, initial, level)
    np.testing.assert_allclose(random_estimate["W_out"], symmetric["W_out"])  # exact local
    assert not np.allclose(random_estimate["W_rec"], symmetric["W_rec"])
    state["feedback"].copy_(params["W_out"])  # B = W_out is symmetric e-prop
    with torch.no_grad():
        again = instance.estimate(context, params, batch, initial, level, state)[0]
    assert_gradients_close(again, symmetric, rtol=1e-10)


def test_rflo_updates_online_at_every_step():
    context, params, batch, initial, level = setup("leaky_rate")
    rflo = rule("rflo", optimizer={"name": "sgd", "lr": 0.1})
    assert rflo.config.feedback == "random" and rflo.config.update == "online"
    before = {k: v.clone() for k, v in params.items()}
    state = rflo.init_state(context, params)
    loss, _ = rflo.update(context, params, batch, initial, level, state,
                          rflo.optimizer(context, params))
    assert torch.isfinite(loss).all() and not torch.equal(params["W_rec"], before["W_rec"])
    # online: the trial's later steps already used changed weights, so the change differs
    # from one step with the whole-trial estimate
    per_trial = rule("eprop", feedback="random", optimizer={"name": "sgd", "lr": 0.1})
    same = {k: v.clone() for k, v in before.items()}
    other_state = per_trial.init_state(context, same)
    other_state["feedback"].copy_(state["feedback"])
    per_trial.update(context, same, batch, initial, level, other_state,
                     per_trial.optimizer(context, same))
    assert not torch.allclose(same["W_rec"], params["W_rec"])


@pytest.mark.parametrize("task", ["flip_flop", "delayed_cue"])
def test_loss_slices_and_trials_add_up_to_the_batch_loss(task):
    context, params, batch, initial, level = setup("leaky_rate", task=task)
    outputs, _ = forward(context, params, batch, initial)
    targets, mask = context.tensor(batch.targets), context.tensor(batch.mask)
    whole = context.task.loss_value(outputs, targets, mask, level)
    normalizer = context.task.loss_normalizer(mask, level)
    slices = sum(context.task.loss_value(outputs[:, :, t:t + 1], targets[:, t:t + 1],
                                         mask[:, t:t + 1], level, normalizer=normalizer)
                 for t in range(batch.n_steps))
    per_trial = context.task.loss_value(outputs, targets, mask, level, per_trial=True)
    torch.testing.assert_close(slices, whole)
    torch.testing.assert_close(per_trial.mean(dim=1).sum(), whole)


def test_parity_loss_slices_add_up():
    task_class = TASKS.get("n_parity")
    task = task_class(task_class.Config(n=2, max_n=4), 1e-3)
    level = task.level_at(4)
    batch = task.sample(8, np.random.default_rng(0), level)
    outputs = torch.randn(1, 8, batch.n_steps, task.n_outputs, dtype=torch.float64)
    targets, mask = torch.as_tensor(batch.targets), torch.as_tensor(batch.mask)
    normalizer = task.loss_normalizer(mask, level)
    whole = task.loss_value(outputs, targets, mask, level)
    slices = sum(task.loss_value(outputs[:, :, t:t + 1], targets[:, t:t + 1], mask[:, t:t + 1],
                                 level, normalizer=normalizer) for t in range(batch.n_steps))
    torch.testing.assert_close(slices, whole)
    torch.testing.assert_close(task.loss_value(outputs, targets, mask, level,
                                               per_trial=True).mean(), whole)


def many_trials(batch, initial, repeats):
    big = copy.deepcopy(batch)
    big.inputs, big.targets, big.mask = (np.repeat(a, repeats, axis=0)
                                         for a in (batch.inputs, batch.targets, batch.mask))
    return big, {k: np.repeat(v, repeats, axis=0) for k, v in initial.items()}


def cosine(a, b):
    a, b = a.flatten(), b.flatten()
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_node_perturbation_is_the_gradient_on_average(model_name):
    """Statistical (fixed seeds): 8000 perturbed flip-flop trials (fast-changing activity,
    so the trace must pair xi(t) with the presynaptic value at t-1), paired baseline."""
    context, params, batch, initial, level = setup(model_name, n_units=8)
    big, big_initial = many_trials(batch, initial, 2000)
    update = estimate("node_perturbation", context, params, big, big_initial, level,
                      sigma=1e-3)
    _, exact = true_gradient(context, params, big, big_initial, level)
    for name in ("W_rec", "W_in"):
        assert cosine(update[name], exact[name]) > 0.95, name
        assert float((update[name] - exact[name]).norm() / exact[name].norm()) < 0.3
    torch.testing.assert_close(update["W_out"], exact["W_out"])  # the readout's exact rule
    assert "b" not in update  # not trained by node perturbation


def test_node_perturbation_with_a_running_baseline():
    context, params, batch, initial, level = setup("leaky_rate", n_units=8, task="delayed_cue")
    big, big_initial = many_trials(batch, initial, 2000)
    instance = rule("node_perturbation", sigma=1e-3, baseline="running")
    state = instance.init_state(context, params)
    with torch.no_grad():
        first, loss = instance.estimate(context, params, big, big_initial, level, state)
    assert torch.isfinite(state["baseline"]).all()
    assert float(state["baseline"][0]) == pytest.approx(float(loss), rel=1e-3)
    _, exact = true_gradient(context, params, big, big_initial, level)
    with torch.no_grad():
        second, _ = instance.estimate(context, params, big, big_initial, level, state)
    assert cosine(second["W_rec"], exact["W_rec"]) > 0.3  # noisier than a paired baseline


@pytest.mark.brian2
@pytest.mark.parametrize("target", ["cython", pytest.param("cpp_standalone",
                                                           marks=pytest.mark.cpp_standalone)])
def test_node_perturbation_on_brian2_gives_the_torch_update(target):
    """Same perturbation samples (same generator), Brian2 against the torch step."""
    from bioplast.backends import get_backend
    context, params, batch, initial, level = setup("leaky_rate", n_units=8, task="delayed_cue")
    on_torch = estimate("node_perturbation", context, params, batch, initial, level)
    context.generator.manual_seed(0)
    context.backend = get_backend("brian2", target=target)
    on_brian2 = estimate("node_perturbation", context, params, batch, initial, level)
    assert_gradients_close(on_brian2, on_torch, rtol=1e-6)


def test_node_perturbation_reduces_the_delayed_cue_loss(tmp_path):
    from bioplast.protocol import load_protocol
    from bioplast.training import train
    path = tmp_path / "np.yaml"
    path.write_text("""\
name: np
seed: 0
model: {file: leaky_rate, n_units: 16, readout.activation: sigmoid}
task: {name: delayed_cue, delay: 20 ms}
rule: {name: node_perturbation, sigma: 0.01, optimizer: {name: sgd, lr: 0.5}}
training: {epochs: 6, steps_per_epoch: 10, batch_size: 64, eval_batches: 1,
           alignment_every: 3}
backend: {name: torch, dtype: float64}
record: {trials: 2}
""")
    result = train(load_protocol(path))
    assert result.status == "complete"
    assert result.history.eval_loss[-1] < 0.8 * result.history.eval_loss[0]
    alignment = result.history.per_parameter("alignment")
    assert np.nanmean(alignment[0][:2]) > 0.2  # W_rec, W_in follow the gradient


def test_temporal_consistency_matches_its_formula():
    """Reference: R = 1/(T B n) sum_t sum_b sum_{i<n} [(h_t - h_{t-1})^2 + 1[t>0] (z_t -
    z_{t-1})^2] computed with numpy from the recorded trajectory."""
    tcr = REGULARIZERS.get("temporal_consistency")(
        REGULARIZERS.get("temporal_consistency").Config(weight=1.0, fraction=0.5))
    context, params, batch, initial, level = setup("leaky_current", n_units=8)
    model = context.model
    _, recorded = forward(context, params, batch, initial, record=["x", "I_rec", "I_in"])
    penalty = tcr.trajectory_penalty(model, recorded, context.initial_tensors(initial, 1))
    h = recorded["x"][0].numpy()
    h0 = initial["x"]
    z = (recorded["I_rec"] + recorded["I_in"])[0].numpy()
    n, (trials, steps, _) = 4, h.shape
    h_all = np.concatenate([h0[:, None], h], axis=1)
    expected = ((np.diff(h_all, axis=1)[..., :n] ** 2).sum()
                + (np.diff(z, axis=1)[..., :n] ** 2).sum()) / (steps * trials * n)
    assert float(torch.as_tensor(penalty).sum()) == pytest.approx(expected, rel=1e-12)


def test_bptt_gradient_with_temporal_consistency_matches_finite_differences():
    """Reference: central differences of the full objective (loss + lambda R)."""
    from bioplast.rules import objective
    tcr_class = REGULARIZERS.get("temporal_consistency")
    context, params, batch, initial, level = setup(
        "leaky_current", n_units=4, regularizers=[tcr_class(tcr_class.Config(weight=2.0))])

    def total(p):
        outputs, recorded = forward(context, p, batch, initial,
                                    record=context.recorded_variables())
        return float(objective(context, p, batch, initial, level, outputs, recorded))

    _, gradient = true_gradient(context, params, batch, initial, level)
    for name in ("W_rec", "W_in", "b"):
        numeric = np.zeros(params[name].shape)
        h = 1e-6
        for index in np.ndindex(params[name].shape):
            shifted = []
            for sign in (1, -1):
                copy_ = {k: v.clone() for k, v in params.items()}
                copy_[name][index] += sign * h
                shifted.append(total(copy_))
            numeric[index] = (shifted[0] - shifted[1]) / (2 * h)
        np.testing.assert_allclose(gradient[name].numpy(), numeric, rtol=1e-5, atol=1e-9,
                                   err_msg=name)


@pytest.mark.parametrize("rule_name", ["bptt", "eprop", "node_perturbation"])
def test_temporal_consistency_changes_every_rule(rule_name):
    tcr_class = REGULARIZERS.get("temporal_consistency")
    context, params, batch, initial, level = setup("leaky_current", n_units=6)
    plain = estimate(rule_name, context, params, batch, initial, level)
    context.generator.manual_seed(0)
    context.regularizers = [tcr_class(tcr_class.Config(weight=1.0))]
    regularized = estimate(rule_name, context, params, batch, initial, level)
    assert not np.allclose(plain["W_rec"].numpy(), regularized["W_rec"].numpy())


def test_weight_l2_adds_its_exact_gradient():
    weight_l2 = REGULARIZERS.get("weight_l2")
    context, params, batch, initial, level = setup("leaky_rate")
    plain = estimate("eprop", context, params, batch, initial, level)
    context.regularizers = [weight_l2(weight_l2.Config(weight=0.3))]
    regularized = estimate("eprop", context, params, batch, initial, level)
    torch.testing.assert_close(regularized["W_rec"] - plain["W_rec"], 0.6 * params["W_rec"])
    torch.testing.assert_close(regularized["b"], plain["b"])


@pytest.mark.slow
def test_eprop_trains_flip_flop_nearly_as_well_as_bptt():
    """Seeded; a CI-sized version of protocols/flip_flop_eprop.yaml (3 bits)."""
    from pathlib import Path

    from bioplast.protocol import load_protocol
    from bioplast.training import train
    protocol = Path(__file__).resolve().parent.parent / "protocols" / "flip_flop_eprop.yaml"
    small = {"task.duration": "50 ms", "task.flip_probability": 0.1, "training.epochs": 12,
             "training.alignment_every": 4, "record.trials": 2}
    rule_of = {name: {"name": name, "optimizer": {"name": "adam", "lr": 0.01}, "grad_clip": 1.0}
               for name in ("bptt", "eprop")}
    results = {name: train(load_protocol(protocol, {**small, "rule": rule_of[name]}))
               for name in ("bptt", "eprop")}
    accuracy = {name: float(np.nanmean(r.history.accuracy_array()[-2:]))
                for name, r in results.items()}
    assert accuracy["bptt"] > 0.85
    assert accuracy["eprop"] >= 0.9 * accuracy["bptt"], accuracy
    alignment = results["eprop"].history.per_parameter("alignment")
    recurrent = results["eprop"].history.parameters.index("W_rec")
    assert alignment[0, recurrent] > 0.5  # early in training


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
@pytest.mark.parametrize("regularizer,config", [
    ("temporal_consistency", {"weight": 1.0}),
    ("activity_l2", {"weight": 0.5}),
])
def test_eprop_regularizer_gradient_is_the_detached_gradient(model_name, regularizer, config):
    """With the task error masked out, e-prop's estimate of a regularizer's gradient equals
    autograd with the recurrent path detached: the partials w.r.t. the step and the step
    before both reach the eligibility traces."""
    cls = REGULARIZERS.get(regularizer)
    if regularizer == "activity_l2" and model_name in ("leaky_current", "ei_rate"):
        config = {**config, "variables": ["r"]}  # a subexpression of the state
    context, params, batch, initial, level = setup(model_name,
                                                   regularizers=[cls(cls.Config(**config))])
    batch.mask[:] = 0.0
    eprop = estimate("eprop", context, params, batch, initial, level)
    _, reference = true_gradient(context, params, batch, initial, level, detach_recurrent=True)
    assert_gradients_close(eprop, reference, rtol=1e-8)


def test_eprop_keeps_linear_units_traces_as_filtered_presynaptic_activity():
    """For a unit linear in its recurrent input with a shared time constant
    (leaky_current), the trace factorizes (Bellec et al. 2020: eps = c * filtered
    presynaptic activity) and e-prop keeps the small form; units with a nonlinearity inside
    the leak (leaky_rate) or a time constant per unit (ei_rate) keep full traces. The
    estimates themselves are checked against autograd above for every shipped model."""
    from bioplast.rules.eprop import filtered_factors
    kinds = {}
    for name in ("leaky_current", "leaky_rate", "ei_rate"):
        context, params, *_ = setup(name)
        kinds[name] = set(filtered_factors(context, params,
                                           list(context.model.couplings.values())))
    assert kinds == {"leaky_current": {"W_rec"}, "leaky_rate": set(), "ei_rate": set()}


@pytest.mark.parametrize("model_name", SHIPPED_MODELS)
def test_eprop_gives_the_same_estimate_with_plan_or_autograd_derivatives(model_name):
    """The online loop's local derivatives from the fused plan (engine ``fused``) and from
    autograd (engine ``eager``, the fallback) give the same e-prop estimate (with a
    regularizer's learning signal) and the same RFLO online update, to 1e-12."""
    tcr = REGULARIZERS.get("temporal_consistency")
    context, params, batch, initial, level = setup(
        model_name, regularizers=[tcr(tcr.Config(weight=1.0))])
    eager = copy.copy(context)
    eager.stepper = TorchStepper(context.model, torch.float64, "cpu", noise=False,
                                 engine="eager")
    fused, reference = (estimate("eprop", c, params, batch, initial, level)
                        for c in (context, eager))
    assert_gradients_close(fused, reference, rtol=1e-12)
    updated = []
    for c in (context, eager):
        c.generator.manual_seed(0)
        rflo = rule("rflo", optimizer={"name": "sgd", "lr": 0.1})
        own = {k: v.clone() for k, v in params.items()}
        state = rflo.init_state(c, own)
        rflo.update(c, own, batch, initial, level, state, rflo.optimizer(c, own))
        updated.append(own)
    assert_gradients_close(*updated, rtol=1e-12)
