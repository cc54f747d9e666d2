"""Robustness of a trained network: ablation, perturbation and recovery, generalization.

Khajehabdollahi, Zeraati et al. (ICLR 2024, arXiv 2309.12927; code
LevinaLab/rnn_timescale_public: ``src/utils/accuracy_perturbation_ablation.py``,
``analysis/ablations``, ``analysis/perturbation_retraining``) find multi-head networks more
robust to ablation and perturbation than single-head ones, and better beyond their trained
N. For one network of a training result (its final parameters, at its final curriculum
level N) this module measures:

- `ablation`: accuracy as units are silenced one after another, in seeded random orders
  and by timescale, fastest or slowest first: by the per-unit ``tau`` parameter (as the
  authors rank units by their trained tau) or by each unit's autocorrelation timescale
  (`bioplast.analysis.timescales`, for models without a per-unit tau). A silenced unit
  neither receives nor sends: every matrix entry to or from it is zero (its rows and
  columns of the recurrent couplings, its rows of the input couplings, its column of the
  readout), as the authors ablate (rows and columns of ``w_hh``, rows of
  ``input_layers``, columns of ``fc``).
- `perturbation`: accuracy after Gaussian noise on the recurrent couplings (or the
  parameters named), scaled relative to each parameter's Frobenius norm: ``W + eps
  ||W||_F D / ||D||_F`` with ``D ~ N(0, 1)`` (the authors' "normalized rnn", after Li et
  al. 2020 eq. 5), projected onto the model's constraints; then the number of the
  protocol's own rule updates (fresh optimizer, training batches of the final level) until
  the accuracy is back.
- `generalization`: accuracy at every N from the first level to ``beyond`` levels past the
  trained one, read by the head trained for that N, or by the newest trained head for the
  N no head was trained for.

Every accuracy is the training's own evaluation (`bioplast.training.Trainer.evaluate`, with
the protocol's ``eval_batches`` and ``eval_batch_size``) on the test batches of the
result's last epoch, so the intact network at its trained N gives the result's final
``accuracy`` again. The networks run on the torch backend (a result trained on another
backend is evaluated with torch's step, which agrees with it). Random orders and noise come
from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from .. import schema
from ..curricula import Curriculum
from ..errors import InputError
from ..protocol import Protocol
from ..results import stored_protocol
from ..tasks import Level
from ..training import Trainer, mean_of_active

#: the noise sizes of the authors' perturbation of the recurrent weights
PAPER_NOISE = (0.0, *np.geomspace(1e-2, 1e1, 10).tolist())
#: the unit parameter that ranks units by timescale
TIMESCALE_PARAMETER = "tau"
#: what ranks units by timescale: that parameter, or the activity's fitted timescales
RANKINGS = ("tau", "activity")
#: networks evaluated in one batched pass (and one tick of the progress bar)
CHUNK = 8


@dataclass(frozen=True)
class RobustnessSettings:
    """Settings of the three analyses (the ``analyze`` flags in brackets).

    ``ablation_steps`` [--ablation-steps]: how many counts of silenced units, evenly from 0
    to all; ``ablation_by`` [--ablation-by]: what ranks units by timescale (`RANKINGS`);
    ``repeats`` [--repeats]: random orders, and noise draws per size; ``noise``
    [--noise]: noise sizes relative to each parameter's norm (0 is always included: the
    reference); ``perturb`` [--perturb]: parameters perturbed (default: the recurrent
    couplings, ``(unit, presynaptic)``); ``recovery_updates`` [--recovery-updates]: most
    updates to recover (default: the protocol's ``steps_per_epoch``); ``recovery_every``
    [--recovery-every]: updates between accuracy checks; ``beyond`` [--beyond]: levels
    tested past the trained N.
    """

    ablation_steps: int = 11
    ablation_by: str = "tau"
    repeats: int = 3
    noise: tuple[float, ...] = PAPER_NOISE
    perturb: tuple[str, ...] | None = None
    recovery_updates: int | None = None
    recovery_every: int = 10
    beyond: int = 10

    def __post_init__(self):
        for flag, value, minimum in (("--ablation-steps", self.ablation_steps, 2),
                                     ("--repeats", self.repeats, 1),
                                     ("--recovery-updates", self.recovery_updates or 0, 0),
                                     ("--recovery-every", self.recovery_every, 1),
                                     ("--beyond", self.beyond, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or value < minimum:
                raise InputError(f"must be an integer >= {minimum}, got {value!r}", key=flag)
        if self.ablation_by not in RANKINGS:
            raise InputError(f"unknown ranking {self.ablation_by!r} (known: "
                             f"{', '.join(RANKINGS)})", key="--ablation-by")
        if not all(np.isfinite(eps) and eps >= 0 for eps in self.noise):
            raise InputError(f"noise sizes must be finite and >= 0, got {self.noise}",
                             key="--noise")


@dataclass(frozen=True)
class TrainedNetwork:
    """One network of a training result, ready to be evaluated as training evaluated it.

    ``params`` maps each parameter to its float64 array; ``n`` is the curriculum's N
    during the last epoch (None for a task without N), ``epoch`` the last epoch's index,
    ``passed`` the N whose level the training passed (its curriculum's criterion on the
    stored accuracy).
    """

    protocol: Protocol
    params: dict[str, np.ndarray]
    n: int | None
    epoch: int
    passed: tuple[int, ...]
    where: str

    @property
    def model(self):
        return self.protocol.model

    def level(self) -> Level:
        curriculum = Curriculum(self.protocol.task)
        curriculum.n = self.n
        return curriculum.level()


def trained_network(dataset: xr.Dataset, params: dict, where: str, flag: str) -> TrainedNetwork:
    """The network of one training result (``params``: its checked parameters); InputError
    naming ``where`` and ``flag`` if ``dataset`` is not a training result with a history."""
    if schema.ATTR_PROTOCOL not in dataset.attrs or "level" not in dataset \
            or "accuracy" not in dataset or dataset.sizes.get(schema.EPOCH, 0) == 0:
        raise InputError("needs a training result (its protocol, history and parameters): "
                         "the network is evaluated on its task as training evaluated it",
                         file=where, key=flag)
    settings = {"seed": _network_seed(dataset, where), "training.members": 1}
    if dataset.attrs.get(schema.ATTR_BACKEND, "torch") != "torch":
        settings["backend"] = {"name": "torch"}
    protocol = stored_protocol(dataset, where, settings)
    levels = dataset["level"].values.astype(int)
    accuracy = dataset["accuracy"].transpose(schema.EPOCH, schema.HEAD).values
    curriculum = Curriculum(protocol.task)
    passed = []
    for n, row in zip(levels, accuracy):
        if curriculum.active and n >= 0:
            curriculum.n = int(n)
            if curriculum.passed(row):
                passed.append(int(n))
    return TrainedNetwork(protocol, {k: np.asarray(v, dtype=float) for k, v in params.items()},
                          None if levels[-1] < 0 else int(levels[-1]), len(levels) - 1,
                          tuple(sorted(set(passed))), where)


def _network_seed(dataset: xr.Dataset, where: str) -> int:
    """The network's own seed (an ensemble member's seed is kept as text)."""
    value = str(dataset.attrs.get(schema.ATTR_SEED, 0))
    if not value.isdigit():
        raise InputError(f"the attribute must be a whole number, got {value[:40]!r}",
                         file=where, key=schema.ATTR_SEED)
    return int(value)


# ---------------------------------------------------------------------- evaluation
def _trainer(network: TrainedNetwork, variants: list[dict[str, np.ndarray]]) -> Trainer:
    """A trainer whose members are ``variants`` of the network's parameters, each at the
    network's level and last epoch (so evaluation draws that epoch's test batches)."""
    trainer = Trainer([network.protocol] * len(variants))
    with torch.no_grad():
        for name, value in trainer.params.items():
            value.copy_(torch.as_tensor(np.stack([v[name] for v in variants]),
                                        dtype=value.dtype, device=value.device))
    for member in trainer.members:
        member.curriculum.n = network.n
    trainer.next_epoch = network.epoch
    return trainer


def _accuracy(trainer: Trainer, members: list[int], levels: dict[int, Level] | None = None,
              bar=None) -> np.ndarray:
    """Test accuracy ``(member, head)`` of ``members`` (NaN for inactive heads), evaluated
    `CHUNK` members at a time."""
    rows = []
    for start in range(0, len(members), CHUNK):
        chunk = members[start:start + CHUNK]
        evaluation = trainer.evaluate(chunk, levels)
        rows += [evaluation[i][1] for i in chunk]
        if bar is not None:
            bar.update(len(chunk))
    return np.stack(rows)


def _progress(total: int, desc: str, progress: bool):
    return tqdm(total=total, desc=desc, unit="network", disable=not progress, leave=False)


def _accuracy_variable(values: np.ndarray, dims: tuple[str, ...], network: TrainedNetwork,
                       long_name: str) -> xr.Variable:
    newest = network.level().heads[-1][0]
    return xr.Variable((*dims, schema.HEAD), values, {
        schema.ATTR_LONG_NAME: long_name, schema.ATTR_UNITS: "1",
        "trained_n": -1 if network.n is None else network.n, "newest_head": newest})


# ---------------------------------------------------------------------- ablation
def silenced(model, params: dict[str, np.ndarray], units) -> dict[str, np.ndarray]:
    """A copy of ``params`` with ``units`` (indices) silenced: every entry of a matrix
    (couplings, readout) along a ``unit`` or ``presynaptic`` axis at those indices is 0."""
    units = np.asarray(units, dtype=int)
    result = {}
    for name, spec in model.params.items():
        value = params[name].copy()
        if len(spec.dims) == 2:
            for axis, dim in enumerate(spec.dims):
                if dim in (schema.UNIT, schema.PRESYNAPTIC):
                    index = [slice(None), slice(None)]
                    index[axis] = units
                    value[tuple(index)] = 0.0
        result[name] = value
    return result


def ranking_timescales(model, params: dict[str, np.ndarray], ranked_by: str,
                       fitted: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """The timescale ``(unit,)`` that ranks the units, or None with a note saying why
    there is none: ``ranked_by`` ``tau``: the per-unit ``tau`` parameter (none without one,
    or when every unit has the same); ``activity``: ``fitted``, the units' autocorrelation
    timescales (none with fewer than two fitted)."""
    if ranked_by == "activity":
        if np.isfinite(fitted).sum() < 2:
            return None, "fewer than two units have a fitted timescale: random orders only"
        return fitted, ""
    spec = model.params.get(TIMESCALE_PARAMETER)
    if spec is None or spec.dims != (schema.UNIT,):
        return None, (f"no per-unit '{TIMESCALE_PARAMETER}' parameter (--ablation-by "
                      "activity ranks units by their activity's timescales): random orders "
                      "only")
    tau = params[TIMESCALE_PARAMETER]
    if np.all(tau == tau[0]):
        return None, f"every unit has the same '{TIMESCALE_PARAMETER}': random orders only"
    return tau, ""


def ablation_orders(timescale: np.ndarray | None, n_units: int, repeats: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Orders in which units are silenced, ``{name: unit indices (unit,)}``:
    ``fastest_first`` / ``slowest_first`` by ``timescale`` (ascending / descending, ties
    in index order, units without one last; none without ``timescale``), and ``random_1``
    ... ``random_<repeats>``."""
    orders = {}
    if timescale is not None:
        orders["fastest_first"] = np.argsort(timescale, kind="stable")
        orders["slowest_first"] = np.argsort(-timescale, kind="stable")
    for repeat in range(repeats):
        orders[f"random_{repeat + 1}"] = rng.permutation(n_units)
    return orders


def ablation(network: TrainedNetwork, settings: RobustnessSettings, seed: int,
             progress: bool = False, fitted: np.ndarray | None = None) -> xr.Dataset:
    """Accuracy as units are silenced (see the module docstring); ``fitted``: the units'
    autocorrelation timescales ``(unit,)``, for ``settings.ablation_by == "activity"``.

    Returns ``ablation_accuracy (ablation_order, silenced, head)`` (test accuracy per head,
    NaN for inactive heads; ``silenced``: how many units of the order are silenced) and
    ``ablation_units (ablation_order, rank)`` (the unit silenced at each rank).
    """
    model = network.model
    timescale, note = ranking_timescales(model, network.params, settings.ablation_by, fitted)
    orders = ablation_orders(timescale, model.n_units, settings.repeats,
                             np.random.default_rng([seed, 1]))
    counts = np.unique(np.round(np.linspace(0, model.n_units, settings.ablation_steps))
                       ).astype(int)
    variants = [silenced(model, network.params, order[:count])
                for order in orders.values() for count in counts]
    trainer = _trainer(network, variants)
    with _progress(len(variants), "ablation", progress) as bar:
        accuracy = _accuracy(trainer, list(range(len(variants))), bar=bar)
    names = list(orders)
    variable = _accuracy_variable(
        accuracy.reshape(len(names), len(counts), -1), ("ablation_order", "silenced"),
        network, "test accuracy with the first `silenced` units of the order silenced")
    variable.attrs["silencing"] = ("every matrix entry to or from a silenced unit is 0 "
                                   "(recurrent rows and columns, input rows, readout column)")
    variable.attrs["ranked_by"] = settings.ablation_by
    if note:
        variable.attrs["note"] = note
    return xr.Dataset(
        {"ablation_accuracy": variable,
         "ablation_units": (("ablation_order", "rank"), np.stack(list(orders.values())),
                            {schema.ATTR_LONG_NAME: "unit silenced at each rank"})},
        coords={"ablation_order": np.array(names), "silenced": counts,
                "rank": np.arange(model.n_units)})


# ---------------------------------------------------------------------- perturbation
def perturbed(model, params: dict[str, np.ndarray], names, scale: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A copy of ``params`` with ``W + scale ||W||_F D / ||D||_F``, ``D ~ N(0, 1)``, for
    each parameter ``W`` of ``names``, projected onto its constraints (`Model.constrain`)."""
    result = {name: value.copy() for name, value in params.items()}
    for name in names:
        direction = rng.normal(size=params[name].shape)
        value = params[name] + scale * np.linalg.norm(params[name]) \
            / np.linalg.norm(direction) * direction
        result[name] = model.constrain(value, name)
    return result


def perturbed_names(model, names, where: str) -> tuple[str, ...]:
    """``names`` checked against the model (InputError naming ``--perturb``), or by
    default the recurrent couplings (parameters shaped ``(unit, presynaptic)``)."""
    if names:
        unknown = [name for name in names if name not in model.params]
        if unknown:
            raise InputError(f"model '{model.name}' has no parameter {', '.join(unknown)} "
                             f"(parameters: {', '.join(model.params)})", file=where,
                             key="--perturb")
        return tuple(names)
    recurrent = tuple(name for name, spec in model.params.items()
                      if spec.dims == (schema.UNIT, schema.PRESYNAPTIC))
    if not recurrent:
        raise InputError(f"model '{model.name}' has no recurrent coupling (unit, "
                         "presynaptic) to perturb: name parameters with --perturb",
                         file=where, key="--perturb")
    return recurrent


def updates_to_recover(trainer: Trainer, target: float, budget: int, every: int,
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Train every member of ``trainer`` with its protocol's rule until the mean test
    accuracy of its active heads reaches ``target``, checked every ``every`` updates and
    after ``budget`` updates at most.

    Returns the accuracy ``(member, head)`` before any update and the updates each member
    needed ``(member,)`` (0 if it met ``target`` untrained; NaN if it did not within
    ``budget``, or diverged).
    """
    members = list(range(len(trainer.members)))
    needed = np.full(len(members), np.nan)
    pending, before = members, None
    with tqdm(total=budget, desc="recovery", unit="update", disable=not progress,
              leave=False) as bar:
        for done in range(budget + 1):
            if done % every == 0 or done == budget:
                accuracy = _accuracy(trainer, pending)
                before = accuracy if before is None else before
                back = [i for i, row in zip(pending, accuracy) if mean_of_active(row) >= target]
                needed[back] = done
                pending = [i for i in pending if i not in back]
            pending = [i for i in pending if not trainer.members[i].finished]  # diverged
            if not pending or done == budget:
                break
            draws = {i: trainer.training_draw(i) for i in pending}
            for group, level, batch, initial in trainer.groups(pending, draws):
                trainer.update_group(group, level, batch, initial)
            bar.update(1)
    return before, needed


def perturbation(network: TrainedNetwork, settings: RobustnessSettings, seed: int,
                 progress: bool = False) -> xr.Dataset:
    """Accuracy after weight noise and the updates to recover (see the module docstring).

    Returns ``perturbation_accuracy (noise_scale, repeat, head)`` (test accuracy per head
    right after the noise) and ``updates_to_recover (noise_scale, repeat)`` (rule updates
    until the mean accuracy of the active heads is back at the target: the unperturbed
    network's, or the task's curriculum threshold where that is lower; NaN: not within
    the budget). ``noise_scale`` is the noise norm relative to the parameter's norm.
    """
    model, protocol = network.model, network.protocol
    names = perturbed_names(model, settings.perturb, network.where)
    scales = np.unique(np.concatenate([[0.0], np.asarray(settings.noise, dtype=float)]))
    rng = np.random.default_rng([seed, 2])
    variants = [perturbed(model, network.params, names, scale, rng)
                for scale in scales for _ in range(settings.repeats)]
    budget = protocol.training.steps_per_epoch if settings.recovery_updates is None \
        else settings.recovery_updates
    trainer = _trainer(network, variants)
    reference = _accuracy(trainer, [0])[0]  # member 0: noise 0, the intact network
    threshold = getattr(protocol.task.config, "threshold", np.inf)
    target = min(mean_of_active(reference), threshold)
    accuracy, needed = updates_to_recover(trainer, target, budget, settings.recovery_every,
                                          progress)
    shape = (len(scales), settings.repeats)
    return xr.Dataset(
        {"perturbation_accuracy": _accuracy_variable(
            accuracy.reshape(*shape, -1), ("noise_scale", "repeat"), network,
            "test accuracy right after the noise"),
         "updates_to_recover": (("noise_scale", "repeat"), needed.reshape(shape), {
             schema.ATTR_LONG_NAME: "rule updates until the mean test accuracy of the "
                                    "active heads is back at recovery_target (NaN: not "
                                    "within recovery_budget)",
             "recovery_target": float(target), "recovery_budget": int(budget),
             "checked_every": int(settings.recovery_every), "rule": protocol.rule.name})},
        coords={"noise_scale": ("noise_scale", scales, {
                    schema.ATTR_LONG_NAME: "noise norm relative to the parameter's norm",
                    "perturbed": ", ".join(names)}),
                "repeat": np.arange(settings.repeats)})


# ---------------------------------------------------------------------- generalization
def require_n(network: TrainedNetwork) -> None:
    """InputError (key ``--generalization``) if the network's task has no memory length N."""
    if network.n is None:
        raise InputError(f"task '{network.protocol.task.name}' has no memory length N to go "
                         "beyond (generalization needs a task with N, e.g. n_parity or "
                         "n_dms)", file=network.where, key="--generalization")


def generalization(network: TrainedNetwork, settings: RobustnessSettings,
                   progress: bool = False) -> xr.Dataset:
    """Accuracy at N from the task's first level to ``beyond`` past the trained N.

    Returns ``generalization_accuracy (generalization_n)`` (test accuracy of the head
    read) and ``generalization_head (generalization_n)`` (the head trained for that N, or
    the newest trained head past it). InputError (key ``--generalization``) for a task
    without N.
    """
    require_n(network)
    trained = dict((n, head) for head, n in network.level().heads)
    newest = network.level().heads[-1][0]
    first = network.protocol.task.initial_level().n_max
    ns = np.arange(min(first, network.n), network.n + settings.beyond + 1)
    heads = np.array([trained.get(int(n), newest) for n in ns])
    trainer = _trainer(network, [network.params] * len(ns))
    levels = {i: Level(((int(head), int(n)),)) for i, (head, n) in enumerate(zip(heads, ns))}
    with _progress(len(ns), "generalization", progress) as bar:
        accuracy = _accuracy(trainer, list(range(len(ns))), levels, bar)
    return xr.Dataset(
        {"generalization_accuracy": ("generalization_n", accuracy[np.arange(len(ns)), heads], {
            schema.ATTR_LONG_NAME: "test accuracy at memory length N of the head read",
            schema.ATTR_UNITS: "1", "trained_n": network.n,
            "last_passed_n": max(network.passed, default=-1)}),
         "generalization_head": ("generalization_n", heads, {
             schema.ATTR_LONG_NAME: "head read: the one trained for N, else the newest"})},
        coords={"generalization_n": ("generalization_n", ns,
                                     {schema.ATTR_LONG_NAME: "memory length N"})})
