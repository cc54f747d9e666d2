"""Learning rules compared on one protocol: one sweep with a ``rule`` dim, and one figure.

`compare_rules` trains ``PROTOCOL`` under each rule of ``rules`` and each of ``n_seeds``
seeds (``seed, seed + 1, ...`` from the protocol's ``seed``) as one sweep
(`bioplast.sweep.run_sweep`, grid ``{"rule.name": rules, "seed": seeds}``, dims ``rule``
and ``seed``). Each rule takes its options from its defaults or from the protocol's
``rule_options.<rule>``; the options every rule takes (``optimizer``, ``grad_clip``) come
from the protocol's ``rule:`` (`bioplast.protocol.resolve_rule`). To the sweep's dataset it
adds:

- ``alignment (rule, seed, epoch)``: the cosine between the rule's gradient estimate (the
  update direction its optimizer is given) and the exact BPTT gradient, on the same batch,
  noise and parameters, over the trainable parameters the rule updates concatenated into
  one vector: ``sum_k a_k . b_k / (|a| |b|)``. It is computed from what training records
  every ``training.alignment_every`` epochs (`bioplast.training.loop.Trainer.
  compare_with_bptt`): per parameter k the cosine ``gradient_alignment``, ``update_norm``
  ``|a_k|`` and ``gradient_norm`` ``|b_k|``, so ``a_k . b_k = cos_k |a_k| |b_k|``. BPTT
  is compared with itself too (``training.alignment_of_exact``): 1 to rounding. NaN in
  the epochs without a comparison.
- ``time_per_update (rule)``, seconds: the median wall time of `TIMED_UPDATES` updates of
  one network (the first seed, batches drawn beforehand, after one update that is not
  timed), measured in this process after the sweep, on the machine that ran it.
- ``final_accuracy (rule, seed)``: the mean accuracy over the active heads in the last
  epoch that has one.

`draw` makes the figure: loss and accuracy per epoch (mean over seeds, shaded mean +- one
standard deviation), alignment per epoch, time per update, final accuracy (seeds as dots).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from . import schema
from .errors import InputError

#: updates timed per rule (after one untimed update)
TIMED_UPDATES = 5
#: the dims of a comparison
RULE, SEED = "rule", "seed"


def check_rules(rules: list[str]) -> list[str]:
    """``rules`` if they are registered rule names, each once; else InputError at
    ``--rules``."""
    from .registry import RULES
    if not rules:
        raise InputError("give at least one rule, e.g. --rules bptt,eprop", key="--rules")
    repeated = sorted({rule for rule in rules if rules.count(rule) > 1})
    if repeated:
        raise InputError(f"rule '{repeated[0]}' given twice", key="--rules")
    for rule in rules:
        try:
            RULES.get(rule)
        except InputError as error:
            raise InputError(error.message, key="--rules") from None
    return rules


def compare_rules(protocol_path: str | os.PathLike, rules: list[str], n_seeds: int,
                  output: str | os.PathLike, *, settings: dict | None = None,
                  command: str = "", progress: Callable[[int, int], None] | None = None,
                  notify: Callable[[str], None] | None = None, **sweep_options) -> xr.Dataset:
    """Train the protocol under each of ``rules`` and ``n_seeds`` seeds, write the dataset
    (see the module docstring) atomically to ``output`` and return it. ``settings``:
    ``--set`` edits of every run; ``sweep_options``: `bioplast.sweep.run_sweep`'s
    (``workers``, ``threads``, ``scheduler``, ``max_members``); ``progress`` and ``notify``
    as there."""
    from .protocol import load_protocol
    from .results import load, save
    from .sweep import run_sweep
    check_rules(rules)
    settings = {**(settings or {}), "training.alignment_of_exact": True}
    first_seed = load_protocol(Path(protocol_path), settings).seed
    seeds = [first_seed + k for k in range(n_seeds)]
    run_sweep(str(protocol_path), {"rule.name": rules, SEED: seeds}, output,
              base_settings=settings, progress=progress, notify=notify,
              **sweep_options).close()
    dataset = load(output)
    times = [update_time(load_protocol(Path(protocol_path), {**settings, "rule.name": rule,
                                                             SEED: first_seed}))
             for rule in rules]
    dataset["alignment"] = concatenated_alignment(dataset)
    dataset["time_per_update"] = xr.DataArray(
        np.asarray(times), dims=RULE, attrs={
            schema.ATTR_UNITS: "second",
            schema.ATTR_LONG_NAME: f"median wall time of {TIMED_UPDATES} updates of one "
                                   f"network (seed {first_seed}) on the machine that ran "
                                   "the comparison"})
    dataset["final_accuracy"] = final_accuracy(dataset["accuracy"])
    dataset.attrs[schema.ATTR_COMMAND] = command
    save(dataset, output)
    return dataset


def concatenated_alignment(dataset: xr.Dataset) -> xr.DataArray:
    """``(..., epoch)`` cosine between a rule's update and the BPTT gradient over the
    parameters it updates, concatenated, from the per-parameter ``gradient_alignment``,
    ``update_norm`` and ``gradient_norm`` (``(..., epoch, parameter)``): ``sum_k cos_k
    |a_k| |b_k| / sqrt(sum_k |a_k|^2 sum_k |b_k|^2)`` over the parameters whose norms were
    recorded (a zero norm gives no cosine but a zero product). NaN where nothing was
    compared or a norm is zero."""
    cosine, a, b = (dataset[name] for name in ("gradient_alignment", "update_norm",
                                                "gradient_norm"))
    compared = np.isfinite(a) & np.isfinite(b)
    product = xr.where(compared, xr.where((a > 0) & (b > 0), cosine * a * b, 0.0), 0.0)
    squares_a = (a ** 2).where(compared, 0.0).sum("parameter")
    squares_b = (b ** 2).where(compared, 0.0).sum("parameter")
    denominator = np.sqrt(squares_a * squares_b)
    alignment = (product.sum("parameter") / denominator.where(denominator > 0)) \
        .where(compared.any("parameter"))
    alignment.attrs = {schema.ATTR_LONG_NAME: "cosine between the rule's update and the BPTT "
                                              "gradient over the parameters it updates, "
                                              "concatenated (before the epoch's updates)",
                       schema.ATTR_UNITS: "1"}
    return alignment


def final_accuracy(accuracy: xr.DataArray) -> xr.DataArray:
    """``accuracy (..., epoch, head)`` -> ``(...)``: the mean over the active (non-NaN)
    heads in the last epoch that has an accuracy (NaN if none has)."""
    from .training.records import mean_of_active
    values = accuracy.transpose(..., schema.EPOCH, schema.HEAD).values
    per_epoch = np.apply_along_axis(mean_of_active, -1, values)  # (..., epoch)
    finite = np.isfinite(per_epoch)
    last = per_epoch.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1)
    final = np.take_along_axis(per_epoch, last[..., None], axis=-1)[..., 0]
    dims = [dim for dim in accuracy.dims if dim not in (schema.EPOCH, schema.HEAD)]
    return xr.DataArray(np.where(finite.any(axis=-1), final, np.nan), dims=dims,
                        attrs={schema.ATTR_LONG_NAME: "test accuracy of the last epoch, mean "
                                                      "over the active heads",
                               schema.ATTR_UNITS: "1"})


def update_time(protocol) -> float:
    """Median wall time in seconds of `TIMED_UPDATES` updates of one network of
    ``protocol`` after one untimed update (its batches drawn before, not timed)."""
    from .training.loop import Trainer
    trainer = Trainer([protocol])
    groups = [next(trainer.groups([0], {0: trainer.training_draw(0)}))
              for _ in range(TIMED_UPDATES + 1)]
    times = []
    for members, level, batch, initial in groups:
        started = time.perf_counter()
        trainer.update_group(members, level, batch, initial)  # ends on the CPU: synchronized
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def draw(dataset: xr.Dataset, path: str | os.PathLike) -> None:
    """The comparison's figure, written atomically to ``path``: loss and test accuracy
    (mean over active heads) per epoch, one line per rule (mean over seeds, shaded mean +-
    one standard deviation), alignment with BPTT per epoch, time per update (bars) and
    final accuracy (seeds as dots, the mean as a bar)."""
    from .plotting import pyplot, save_figure
    from .training.records import mean_of_active
    plt = pyplot()
    rules = [str(rule) for rule in dataset[RULE].values]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    epochs = dataset[schema.EPOCH].values
    accuracy = dataset["accuracy"].reduce(
        lambda values, axis: np.apply_along_axis(mean_of_active, axis, values), schema.HEAD)
    figure, axes = plt.subplots(1, 5, figsize=(20, 3.8))
    curves = (("loss", dataset["loss"]), ("test accuracy", accuracy),
              ("cosine(update, BPTT gradient)", dataset["alignment"]))
    for axis, (label, values) in zip(axes, curves):
        for index, rule in enumerate(rules):
            per_seed = values.sel({RULE: rule}).transpose(SEED, schema.EPOCH).values
            seen = np.isfinite(per_seed).any(axis=0)
            if not seen.any():
                continue
            mean = np.nanmean(per_seed[:, seen], axis=0)
            spread = np.nanstd(per_seed[:, seen], axis=0)
            color = colors[index % len(colors)]
            axis.plot(epochs[seen], mean, "o-" if seen.sum() < len(epochs) else "-",
                      color=color, label=rule, markersize=3)
            axis.fill_between(epochs[seen], mean - spread, mean + spread, color=color,
                              alpha=0.2, linewidth=0)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
    if np.nanmin(dataset["loss"].values, initial=np.inf) > 0:
        axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    if not np.isfinite(dataset["alignment"].values).any():
        axes[2].text(0.5, 0.5, "not measured\n(training.alignment_every: null)",
                     ha="center", va="center", transform=axes[2].transAxes)
    positions = np.arange(len(rules))
    axes[3].bar(positions, dataset["time_per_update"].sel({RULE: rules}).values * 1e3,
                color=[colors[i % len(colors)] for i in positions])
    axes[3].set_ylabel("time per update (ms)")
    final = dataset["final_accuracy"].transpose(RULE, SEED).values
    axes[4].bar(positions, [mean_of_active(row) for row in final],
                color=[colors[i % len(colors)] for i in positions], alpha=0.4)
    for index in positions:
        axes[4].plot(np.full(final.shape[1], index), final[index], "o", color="black",
                     markersize=4)
    axes[4].set_ylabel("final test accuracy")
    for axis in axes[3:]:
        axis.set_xticks(positions, rules, rotation=30, ha="right")
    figure.suptitle(f"task '{dataset.attrs.get('task', '?')}', model "
                    f"'{dataset.attrs.get(schema.ATTR_MODEL_NAME, '?')}': "
                    f"{len(rules)} rules x {dataset.sizes[SEED]} seeds", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)
