"""Learning-rate schedules (`rule.optimizer.schedule`): the sequences of
torch.optim.lr_scheduler, one schedule per network, in the history and the checkpoint."""

import textwrap

import numpy as np
import pytest
import torch

from bioplast import cli
from bioplast.optimizers import MemberOptimizer, Schedule
from bioplast.protocol import load_protocol
from bioplast.results import training_dataset
from bioplast.rules.base import OptimizerConfig, ScheduleConfig
from bioplast.training import train

LOSSES = np.random.default_rng(0).uniform(0.5, 1.0, 80) * np.linspace(1.0, 0.2, 80)
CASES = {
    "plateau": ({"factor": 0.5, "patience": 2, "threshold": 0.05, "min_lr": 1e-4},
                lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opt, factor=0.5, patience=2, threshold=0.05, min_lr=1e-4)),
    "plateau_defaults": ({}, torch.optim.lr_scheduler.ReduceLROnPlateau),
    "step": ({"step_size": 3, "gamma": 0.7},
             lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)),
    "cosine": ({"T_max": 7, "eta_min": 1e-3},  # beyond T_max the cosine rises again
               lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7,
                                                                      eta_min=1e-3)),
}


def torch_lrs(make, lr, losses):
    """The learning rates torch's scheduler gives after each epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make(optimizer)
    lrs = []
    for loss in losses:
        optimizer.step()  # no gradient: changes nothing (torch warns without it)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss)
        else:
            scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def config(case):
    fields, _ = CASES[case]
    return ScheduleConfig(kind=case.removesuffix("_defaults"), **fields)


@pytest.mark.parametrize("case", CASES)
def test_each_schedule_gives_torchs_learning_rates(case):
    schedule = Schedule(config(case), 0.1)
    ours = [schedule.step(float(loss)) for loss in LOSSES]
    expected = torch_lrs(CASES[case][1], 0.1, [float(loss) for loss in LOSSES])
    assert ours == expected  # exactly: the same float operations
    assert len(set(ours)) > 1  # the schedule did change the learning rate


def test_each_member_has_its_own_schedule_state_and_learning_rate():
    configs = [OptimizerConfig(name="sgd", lr=lr, schedule=config("plateau"))
               for lr in (0.1, 0.05, 0.2)]
    params = {"w": torch.zeros(3, 4, dtype=torch.float64)}
    optimizer = MemberOptimizer(configs, [None] * 3, params)
    losses = {0: LOSSES, 1: LOSSES[::-1].copy(), 2: LOSSES}
    for epoch in range(40):
        # member 2 stops training after 10 epochs: its schedule stays where it was
        optimizer.end_epoch({i: float(losses[i][epoch]) for i in losses
                             if i < 2 or epoch < 10})
    expected = [torch_lrs(CASES["plateau"][1], lr, [float(x) for x in losses[i][:n]])[-1]
                for i, (lr, n) in enumerate(((0.1, 40), (0.05, 40), (0.2, 10)))]
    assert optimizer.learning_rates() == expected
    assert optimizer.lr.tolist() == expected  # what the update uses
    again = MemberOptimizer(configs, [None] * 3, params)
    again.load_state_dict(optimizer.state_dict())
    assert again.learning_rates() == expected and again.lr.tolist() == expected
    assert again.schedules[1].bad_epochs == optimizer.schedules[1].bad_epochs
    assert again.schedules[1].best == optimizer.schedules[1].best


def test_without_a_schedule_the_learning_rate_stays():
    optimizer = MemberOptimizer([OptimizerConfig(lr=0.003)], [None],
                                {"w": torch.zeros(1, 2, dtype=torch.float32)})
    optimizer.end_epoch({0: 1.0})
    assert optimizer.learning_rates() == [0.003]
    assert not any(key.startswith("schedule.") for key in optimizer.state_dict())


def test_members_need_the_same_kind_of_schedule():
    configs = [OptimizerConfig(schedule=config("step")), OptimizerConfig(schedule=config("cosine"))]
    with pytest.raises(ValueError, match="same kind of schedule"):
        MemberOptimizer(configs, [None, None], {"w": torch.zeros(2, 1)})


PROTOCOL = """\
name: scheduled
seed: 5
model: {file: leaky_tau, n_units: 16}
task: {name: n_parity, n: 2, curriculum: multi_head, max_n: 8}
rule: {name: bptt, optimizer: {name: adam, lr: 0.01, SCHEDULE}, grad_clip: 2.0}
training: {epochs: 6, steps_per_epoch: 3, batch_size: 16, eval_batches: 1,
           checkpoint_every: 1, alignment_every: null, members: 2}
backend: {name: torch, dtype: float64}
record: {trials: 2}
"""
# patience 0 and a 10% threshold: the learning rate falls within the first epochs
PLATEAU = "schedule: {kind: plateau, patience: 0, threshold: 0.1, factor: 0.5}"


def test_the_history_records_each_epochs_learning_rate_per_network():
    result = train(load_protocol(PROTOCOL.replace("SCHEDULE", PLATEAU)))
    for member in result.members:
        history = member.history
        expected = [0.01] + torch_lrs(
            lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, patience=0, threshold=0.1, factor=0.5), 0.01, history.loss)[:-1]
        assert history.lr == expected and history.lr[-1] < 0.01
    assert result.members[0].history.lr != result.members[1].history.lr
    dataset = training_dataset(result)  # the result file holds them (member, epoch)
    stored = dataset["learning_rate"].transpose("member", "epoch").values
    assert stored.tolist() == [m.history.lr for m in result.members]


@pytest.mark.parametrize("schedule,key,words", [
    ("schedule: {kind: exponential}", "rule.optimizer.schedule.kind",
     "'plateau', 'step' or 'cosine'"),
    ("schedule: {kind: step}", "rule.optimizer.schedule", "kind: step needs step_size"),
    ("schedule: {kind: plateau, T_max: 5}", "rule.optimizer.schedule",
     "T_max applies to kind: cosine"),
    ("schedule: {kind: plateau, factor: 1.5}", "rule.optimizer.schedule.factor", "less than 1"),
    ("schedule: {kind: cosine, T_max: 0}", "rule.optimizer.schedule.T_max", "greater than"),
])
def test_bad_schedules_are_one_line_errors_naming_the_key(tmp_path, capsys, schedule, key,
                                                           words):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(PROTOCOL.replace("SCHEDULE", schedule)))
    assert cli.main(["run", str(path), "-o", str(tmp_path / "o.nc"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"bad.yaml:5: {key}: " in err and words in err, err
