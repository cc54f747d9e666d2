"""Ablation, perturbation and generalization of trained networks (`bioplast analyze
--ablation --perturbation --generalization`), against references: the training's own
evaluation of its last epoch (the intact network must give it again, on the same test
batches), the class frequencies of those batches (a network with every unit silenced
outputs its readout bias: one class per head), the sorted per-unit tau, the norm of the
noise asked for, and the curriculum's head of each N."""

import numpy as np
import pytest
import xarray as xr

from bioplast import cli, load_model
from bioplast.analysis.analyze import analyze
from bioplast.analysis.robustness import RobustnessSettings, perturbed
from bioplast.errors import InputError
from bioplast.results import choose_network, load, stored_protocol
from bioplast.training.loop import _seed

PROTOCOL = """\
name: robust
seed: 1
model: {{file: leaky_tau, n_units: 12}}
task: {{name: {task}, n: 2, curriculum: {curriculum}, max_n: 6, threshold: 0.7}}
rule: {{name: bptt, optimizer: {{name: adam, lr: 0.03}}, grad_clip: 2.0}}
training: {{epochs: {epochs}, steps_per_epoch: 15, batch_size: 32, eval_batches: 2,
           eval_batch_size: 64}}
backend: {{name: torch, dtype: float64}}
record: {{trials: 2}}
"""

FLIP_FLOP = """\
name: flip
seed: 0
model: {file: leaky_rate, n_units: 6}
task: {name: flip_flop, n_bits: 1, duration: 20 ms}
rule: {name: bptt, optimizer: {name: adam, lr: 0.01}}
training: {epochs: 1, steps_per_epoch: 2, batch_size: 4, eval_batches: 1}
backend: {name: torch, dtype: float64}
record: {trials: 1}
"""

SMALL = RobustnessSettings(ablation_steps=4, repeats=2, noise=(0.0, 0.1, 3.0),
                           recovery_updates=20, recovery_every=5, beyond=3)


def trained(tmp_path_factory, name, text):
    folder = tmp_path_factory.mktemp(name)
    protocol, out = folder / "protocol.yaml", folder / "trained.nc"
    protocol.write_text(text)
    assert cli.main(["run", str(protocol), "-o", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return trained(tmp_path_factory, "multi", PROTOCOL.format(
        task="n_parity", curriculum="multi_head", epochs=6))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return trained(tmp_path_factory, "single", PROTOCOL.format(
        task="n_dms", curriculum="single_head", epochs=4))


@pytest.fixture(scope="module")
def analysed(multi, single):
    """Every robustness analysis of both networks: {name: (result, analysis)}."""
    pairs = {}
    for name, path in (("multi", multi), ("single", single)):
        result = xr.load_dataset(path)
        pairs[name] = result, analyze(
            result, do_timescales=False, do_dynamics=False, do_geometry=False,
            do_ablation=True, do_perturbation=True, do_generalization=True,
            robustness=SMALL, seed=0, where=str(path))
    return pairs


@pytest.mark.parametrize("name", ["multi", "single"])
def test_the_intact_network_gives_the_final_evaluation_again(analysed, name):
    """Reference: the result's stored accuracy of its last epoch (the same test batches)."""
    result, analysis = analysed[name]
    final = result["accuracy"].values[-1]
    for order in analysis["ablation_order"].values:
        np.testing.assert_array_equal(
            analysis["ablation_accuracy"].sel(ablation_order=order, silenced=0), final)
    for repeat in analysis["repeat"].values:
        np.testing.assert_array_equal(
            analysis["perturbation_accuracy"].sel(noise_scale=0.0, repeat=repeat), final)
    trained_n = int(result["level"].values[-1])
    newest = int(analysis["ablation_accuracy"].attrs["newest_head"])
    assert float(analysis["generalization_accuracy"].sel(generalization_n=trained_n)) == \
        final[newest]


@pytest.mark.parametrize("name", ["multi", "single"])
def test_every_unit_silenced_answers_one_class_per_head(analysed, name):
    """With every unit silenced the outputs are the readout bias: each head answers the
    class its bias prefers, so its accuracy is that class's frequency among the test
    trials (drawn here as the training's evaluation draws them)."""
    result, analysis = analysed[name]
    protocol = stored_protocol(result, name)
    task, model = protocol.task, protocol.model
    epoch, n = result.sizes["epoch"] - 1, int(result["level"].values[-1])
    rng = np.random.default_rng(_seed(protocol.seed, 3, epoch))
    level = task.level_at(n)
    labels = {head: [] for head, _ in level.heads}
    for _ in range(protocol.training.eval_batches):
        batch = task.sample(protocol.training.eval_batch_size, rng, level)
        model.initial_state(batch.n_trials, seed=int(rng.integers(2**62)))
        for head in labels:
            labels[head].append(batch.conditions[f"label_head{head}"])
    bias = result["b_out"].values
    everyone = analysis["ablation_accuracy"].sel(silenced=model.n_units)
    for head, values in labels.items():
        answered = int(np.argmax(bias[2 * head:2 * head + 2]))
        expected = np.mean(np.concatenate(values) == answered)
        np.testing.assert_allclose(everyone.isel(head=head), expected, rtol=0, atol=1e-12)


def test_timescale_orders_follow_the_sorted_tau(analysed):
    """Reference: numpy's argsort of the trained per-unit tau."""
    result, analysis = analysed["multi"]
    tau = result["tau"].values
    units = analysis["ablation_units"]
    np.testing.assert_array_equal(units.sel(ablation_order="fastest_first"),
                                  np.argsort(tau, kind="stable"))
    np.testing.assert_array_equal(units.sel(ablation_order="slowest_first"),
                                  np.argsort(-tau, kind="stable"))
    assert np.all(np.diff(tau[units.sel(ablation_order="fastest_first").values]) >= 0)
    for order in ("random_1", "random_2"):  # every unit once
        assert sorted(units.sel(ablation_order=order).values) == list(range(tau.size))


def test_reruns_are_identical_and_the_seed_changes_the_random_draws(multi):
    result = xr.load_dataset(multi)

    def run(seed):
        return analyze(result, do_timescales=False, do_dynamics=False, do_geometry=False,
                       do_ablation=True, do_perturbation=True, robustness=SMALL, seed=seed,
                       where="multi")
    first, again, other = run(0), run(0), run(1)
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())
    assert not np.array_equal(first["ablation_units"].sel(ablation_order="random_1"),
                              other["ablation_units"].sel(ablation_order="random_1"))
    assert not np.array_equal(first["perturbation_accuracy"].sel(noise_scale=3.0),
                              other["perturbation_accuracy"].sel(noise_scale=3.0))


def test_noise_has_the_asked_norm_relative_to_the_weights(multi):
    """Reference: ||W' - W||_F = eps ||W||_F (Li et al. 2020 eq. 5, the authors' choice);
    a constrained parameter is projected back (no autapses: the diagonal stays 0)."""
    result = xr.load_dataset(multi)
    model = stored_protocol(result, "multi").model
    params = {name: result[name].values for name in model.params}
    rng = np.random.default_rng(0)
    for eps in (0.0, 0.01, 2.0):
        noisy = perturbed(model, params, ["W_in", "W_rec"], eps, rng)
        change = np.linalg.norm(noisy["W_in"] - params["W_in"])
        assert change == pytest.approx(eps * np.linalg.norm(params["W_in"]), rel=1e-12)
        assert np.all(np.diag(noisy["W_rec"]) == 0)
        for name in set(params) - {"W_in", "W_rec"}:
            np.testing.assert_array_equal(noisy[name], params[name])
    zero = perturbed(model, params, ["W_rec"], 0.0, rng)
    np.testing.assert_array_equal(zero["W_rec"], params["W_rec"])


@pytest.mark.parametrize("name", ["multi", "single"])
def test_recovery_counts_updates_until_the_target(analysed, name):
    """Zero noise is the unperturbed network: 0 updates. A network at or above the target
    right after the noise needs 0, one below it more (checked every 5 updates, at most
    20), or never within the budget (NaN)."""
    _, analysis = analysed[name]
    updates = analysis["updates_to_recover"]
    target = updates.attrs["recovery_target"]
    assert np.all(updates.sel(noise_scale=0.0) == 0)
    mean = analysis["perturbation_accuracy"].mean("head", skipna=True)
    at_target = (mean >= target).values
    assert np.all(updates.values[at_target] == 0)
    below = updates.values[~at_target]
    assert below.size and np.all(np.isnan(below) | np.isin(below, [5, 10, 15, 20]))
    if name == "single":  # its target is near chance: training brings the draws back
        assert np.isfinite(below).any()
    assert updates.attrs["recovery_budget"] == 20


def test_generalization_reads_the_head_of_each_n(analysed):
    """Multi-head: the head trained for N (head N - 2) up to the trained N, then the
    newest; single-head: head 0 for every N. N runs from the first level to 3 past the
    trained one."""
    for name in ("multi", "single"):
        result, analysis = analysed[name]
        trained_n = int(result["level"].values[-1])
        ns = analysis["generalization_n"].values
        assert list(ns) == list(range(2, trained_n + 4))
        heads = analysis["generalization_head"].values
        expected = [min(n, trained_n) - 2 for n in ns] if name == "multi" else [0] * len(ns)
        assert list(heads) == expected
        accuracy = analysis["generalization_accuracy"].values
        assert np.all((accuracy >= 0) & (accuracy <= 1))


def test_errors_name_the_flag(tmp_path_factory, multi):
    flip = xr.load_dataset(trained(tmp_path_factory, "flip", FLIP_FLOP))
    options = dict(do_timescales=False, do_dynamics=False, do_geometry=False, where="f.nc")
    with pytest.raises(InputError) as error:  # a task without N
        analyze(flip, do_generalization=True, **options)
    assert error.value.key == "--generalization" and error.value.file == "f.nc"
    assert "no memory length N" in error.value.message
    recording = xr.Dataset({"activity": (("trial", "time", "unit"), np.zeros((2, 5, 3)))})
    with pytest.raises(InputError) as error:  # not a training result
        analyze(recording, do_ablation=True, **options)
    assert error.value.key == "--ablation" and "training result" in error.value.message
    with pytest.raises(InputError) as error:
        analyze(xr.load_dataset(multi), do_perturbation=True,
                robustness=RobustnessSettings(perturb=("W_nope",)), **options)
    assert error.value.key == "--perturb" and "W_nope" in error.value.message


def test_a_model_without_per_unit_tau_is_ablated_in_random_orders(tmp_path_factory):
    flip = xr.load_dataset(trained(tmp_path_factory, "flip_random", FLIP_FLOP))
    analysis = analyze(flip, do_timescales=False, do_dynamics=False, do_geometry=False,
                       do_ablation=True, robustness=SMALL, where="f.nc")
    assert list(analysis["ablation_order"].values) == ["random_1", "random_2"]
    assert "random orders only" in analysis["ablation_accuracy"].attrs["note"]
    assert load_model("leaky_rate").params["tau"].dims == ()  # shared: nothing to rank by


def test_units_ranked_by_their_activity_follow_the_fitted_timescales(tmp_path_factory):
    """Reference: numpy's argsort of the timescales analysis' per-unit tau (units without
    a fitted timescale last in both orders)."""
    flip = xr.load_dataset(trained(tmp_path_factory, "flip_activity", FLIP_FLOP))
    analysis = analyze(flip, do_timescales=False, do_dynamics=False, do_geometry=False,
                       do_ablation=True, robustness=RobustnessSettings(
                           ablation_steps=3, repeats=1, ablation_by="activity"),
                       steps=600, burn_in=50, trials=2, max_lag=10, where="f.nc")
    fitted = analysis["tau"].values
    assert analysis["ablation_accuracy"].attrs["ranked_by"] == "activity"
    assert np.isfinite(fitted).sum() >= 2
    np.testing.assert_array_equal(analysis["ablation_units"].sel(ablation_order="fastest_first"),
                                  np.argsort(fitted, kind="stable"))
    np.testing.assert_array_equal(analysis["ablation_units"].sel(ablation_order="slowest_first"),
                                  np.argsort(-fitted, kind="stable"))


def test_command_line_analysis_and_plot(multi, tmp_path, capsys):
    out, figure = tmp_path / "robust.nc", tmp_path / "robust.png"
    assert cli.main(["analyze", str(multi), "--ablation", "--perturbation",
                     "--generalization", "--ablation-steps", "3", "--repeats", "1",
                     "--noise", "0.1,1", "--recovery-updates", "5", "--recovery-every", "5",
                     "--beyond", "2", "--quiet", "-o", str(out)]) == 0
    analysis = xr.load_dataset(out)
    assert analysis.attrs["analyses"] == '["ablation", "perturbation", "generalization"]'
    assert list(analysis["noise_scale"].values) == [0.0, 0.1, 1.0]  # 0: the reference
    assert analysis["ablation_accuracy"].dims == ("ablation_order", "silenced", "head")
    assert cli.main(["plot", str(out), "-o", str(figure), "--quiet"]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["analyze", str(multi), "--perturbation", "--perturb", "W_nope",
                     "-o", str(tmp_path / "bad.nc")]) == 2
    assert "--perturb" in capsys.readouterr().err and not (tmp_path / "bad.nc").exists()


@pytest.mark.parametrize("settings, flag", [
    (dict(repeats=0), "--repeats"), (dict(ablation_steps=1), "--ablation-steps"),
    (dict(noise=(0.1, -1.0)), "--noise"), (dict(recovery_every=0), "--recovery-every"),
    (dict(beyond=-1), "--beyond"), (dict(ablation_by="speed"), "--ablation-by")])
def test_settings_out_of_range_name_their_flag(settings, flag):
    with pytest.raises(InputError) as error:
        RobustnessSettings(**settings)
    assert error.value.key == flag


def test_one_member_of_an_ensemble_is_evaluated_with_its_own_seed(tmp_path_factory):
    """Reference: the member's stored final accuracy (its own test batches: seed + 1)."""
    path = trained(tmp_path_factory, "ensemble", PROTOCOL.format(
        task="n_parity", curriculum="multi_head", epochs=2).replace(
        "eval_batches: 2,", "eval_batches: 2, members: 2,"))
    member = choose_network(load(path), {"member": 1}, str(path))
    analysis = analyze(member, do_timescales=False, do_dynamics=False, do_geometry=False,
                       do_ablation=True, robustness=SMALL, where=str(path))
    np.testing.assert_array_equal(analysis["ablation_accuracy"].sel(
        ablation_order="random_1", silenced=0), member["accuracy"].values[-1])
