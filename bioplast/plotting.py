"""Figures of result datasets (matplotlib, no screen needed)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import xarray as xr

from . import schema
from .errors import InputError
from .files import atomic_write


def pyplot():
    """matplotlib.pyplot on the Agg backend (no screen needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_simulations(datasets: Sequence[xr.Dataset], labels: Sequence[str],
                     path: str | os.PathLike, variable: str | None = None, trial: int = 0,
                     n_units: int = 4) -> None:
    """Traces of a few units (top) and the outputs (bottom) of one trial, one line style
    per dataset, so runs of the same model on different backends can be compared by eye.
    With two or more datasets the title gives the largest difference from the first."""
    plt = pyplot()
    first = datasets[0]
    if variable is None:
        variable = next((name for name, v in first.data_vars.items()
                         if v.dims[-3:] == (schema.TRIAL, schema.TIME, schema.UNIT)), None)
    for label, dataset in zip(labels, datasets):
        if variable is None:
            raise InputError("no recorded (trial, time, unit) variable to plot", file=label)
        if variable not in dataset:
            raise InputError(f"no recorded variable '{variable}' to plot", file=label)
        if trial >= dataset.sizes.get(schema.TRIAL, 0):
            raise InputError(f"trial {trial} out of range", file=label)
    has_outputs = all(schema.OUTPUTS in d for d in datasets)
    figure, axes = plt.subplots(2 if has_outputs else 1, 1, figsize=(10, 6 if has_outputs else 3.5),
                                sharex=True, squeeze=False)
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, dataset) in enumerate(zip(labels, datasets)):
        style = styles[index % len(styles)]
        activity = _first_member(dataset[variable]).isel({schema.TRIAL: trial})
        time_ms = dataset[schema.TIME].values * 1e3
        for unit in range(min(n_units, activity.sizes[schema.UNIT])):
            axes[0, 0].plot(time_ms, activity.isel({schema.UNIT: unit}), style,
                            color=colors[unit % len(colors)],
                            label=f"unit {unit}, {label}" if n_units <= 4 else None)
        if has_outputs:
            outputs = _first_member(dataset[schema.OUTPUTS]).isel({schema.TRIAL: trial})
            for channel in range(outputs.sizes[schema.OUTPUT]):
                axes[1, 0].plot(time_ms, outputs.isel({schema.OUTPUT: channel}), style,
                                color=colors[channel % len(colors)],
                                label=f"output {channel}, {label}")
    units = first[variable].attrs.get(schema.ATTR_UNITS, "")
    axes[0, 0].set_ylabel(f"{variable}" + (f" [{units}]" if units not in ("", "1") else ""))
    axes[-1, 0].set_xlabel("time [ms]")
    if has_outputs:
        axes[1, 0].set_ylabel("outputs")
    title = f"model '{first.attrs.get(schema.ATTR_MODEL_NAME, '?')}', trial {trial}"
    if len(datasets) > 1:
        differences = [float(np.max(np.abs(d[variable].values - first[variable].values)))
                       for d in datasets[1:] if d[variable].shape == first[variable].shape]
        if differences:
            title += f"; max |{variable} - {labels[0]}| = {max(differences):.2g}"
    axes[0, 0].set_title(title, fontsize=10)
    for axis in axes[:, 0]:
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def figure_format(path, default: str = "png") -> str:
    """The format the suffix of ``path`` asks for (``default`` without one); InputError
    naming ``path`` if matplotlib cannot write it (checked before the work that makes the
    figure, or by `save_figure`)."""
    from matplotlib.backend_bases import FigureCanvasBase
    suffix = os.path.splitext(str(path))[1].lstrip(".").lower() or default
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix not in supported:
        raise InputError(f"cannot write '.{suffix}' figures (formats: "
                         f"{', '.join(sorted(supported))})", file=str(path))
    return suffix


def save_figure(figure, path, dpi: int) -> None:
    """Write ``figure`` atomically in the format its file name asks for."""
    plt = pyplot()
    try:
        suffix = figure_format(path)
        with atomic_write(path) as temporary:
            figure.savefig(temporary, dpi=dpi, format=suffix)
    finally:
        plt.close(figure)


def _first_member(array: xr.DataArray) -> xr.DataArray:
    return array.isel({schema.MEMBER: 0}) if schema.MEMBER in array.dims else array


def split_networks(dataset: xr.Dataset, label: str) -> list[tuple[str, xr.Dataset]]:
    """The networks of an ensemble or sweep result as ``(label, dataset)`` pairs (a single
    network's result as it is): one per combination of the dims of ``loss`` other than
    ``epoch`` (``member``, sweep keys), labelled with their coordinate values."""
    from .results import select_network
    dims = [dim for dim in dataset["loss"].dims if dim != schema.EPOCH]
    if not dims:
        return [(label, dataset)]
    pairs = []
    for position in np.ndindex(*(dataset.sizes[dim] for dim in dims)):
        chosen = {dim: (dataset[dim].values[i] if dim in dataset.coords else i)
                  for dim, i in zip(dims, position)}
        name = ", ".join(f"{dim}={value}" for dim, value in chosen.items())
        pairs.append((f"{label} {name}", select_network(dataset, **chosen)))
    return pairs


def plot_training(datasets: Sequence[xr.Dataset], labels: Sequence[str],
                  path: str | os.PathLike, n_trials: int = 2) -> None:
    """Learning curves of one or more training results (loss, accuracy, curriculum level),
    the alignment of each rule's update with the BPTT gradient when recorded, and, for the
    first result, example test trials: targets (dashed) against outputs (solid)."""
    plt = pyplot()
    first = datasets[0]
    has_trials = schema.OUTPUTS in first and schema.TARGETS in first
    has_alignment = any("gradient_alignment" in d and bool(np.isfinite(
        d["gradient_alignment"].values).any()) and d.attrs.get(schema.ATTR_RULE) != "bptt"
        for d in datasets)
    n_panels = 2 + has_trials + has_alignment
    figure, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    twin = None  # the curriculum's axis, made for the first result that has levels
    for index, (label, dataset) in enumerate(zip(labels, datasets)):
        color = colors[index % len(colors)]
        epochs = dataset[schema.EPOCH].values + 1
        axes[0].semilogy(epochs, dataset["loss"], color=color, label=f"{label} train")
        axes[0].semilogy(epochs, dataset["eval_loss"], "--", color=color, label=f"{label} test")
        accuracy = dataset["accuracy"].mean(schema.HEAD, skipna=True)
        axes[1].plot(epochs, accuracy, color=color, label=label)
        if (dataset["level"] >= 0).any() and dataset["level"].max() > dataset["level"].min():
            twin = axes[1].twinx() if twin is None else twin
            twin.step(epochs, dataset["level"], ":", color=color, where="post")
            twin.set_ylabel("curriculum N (dotted)")
        if has_alignment and "gradient_alignment" in dataset:
            alignment = dataset["gradient_alignment"]
            for marker, parameter in zip("osd^v<>", alignment["parameter"].values):
                values = alignment.sel(parameter=parameter).values
                shown = np.isfinite(values)
                axes[2].plot(epochs[shown], values[shown], marker=marker, ls="-", color=color,
                             label=f"{label} {parameter}", markersize=4)
    many = len(datasets) > 8  # legends of every network would hide the curves
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    if not many:
        axes[0].legend(fontsize=7)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("test accuracy (mean over active heads)")
    axes[1].set_ylim(0, 1.02)
    if not many:
        axes[1].legend(fontsize=7, loc="lower right")
    if has_alignment:
        axes[2].set_xlim(axes[0].get_xlim())
        axes[2].set_ylabel("cosine(update, BPTT gradient)")
        axes[2].set_ylim(-1.02, 1.02)
        axes[2].axhline(0, color="0.8", lw=0.8)
        if not many:
            axes[2].legend(fontsize=6, ncol=2)
    if has_trials:
        _plot_trials(axes[-1], first, n_trials, colors)
    from matplotlib.ticker import MaxNLocator
    for axis in axes[:2 + has_alignment]:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epochs completed")
    runs = "; ".join(f"{label}: {d.attrs.get('protocol_name', '')}, rule "
                     f"'{d.attrs.get(schema.ATTR_RULE, '?')}' [{d.attrs.get(schema.ATTR_STATUS, '?')}]"
                     for label, d in zip(labels, datasets)) if len(datasets) <= 2 else \
        f"{len(datasets)} networks ({labels[0]} ... {labels[-1]})"
    figure.suptitle(f"task '{first.attrs.get('task', '?')}', model "
                    f"'{first.attrs.get(schema.ATTR_MODEL_NAME, '?')}' - {runs}", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def _plot_trials(axis, dataset: xr.Dataset, n_trials: int, colors) -> None:
    """Outputs against targets of the first test trials; classification heads show the
    probability of class 1 of the newest head and the label at the masked steps."""
    time_ms = dataset[schema.TIME].values * 1e3
    mask = dataset[schema.MASK].values
    outputs, targets = dataset[schema.OUTPUTS].values, dataset[schema.TARGETS].values
    classification = dataset.attrs.get("task_loss") == "cross_entropy"
    offset = 0.0
    for trial in range(min(n_trials, outputs.shape[0])):
        if classification:
            active = np.nonzero(mask[trial].max(axis=0) > 0)[0]
            channels = active[-2:]
            logits = outputs[trial][:, channels]
            probability = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
            axis.plot(time_ms, probability + offset, color=colors[0])
            steps = mask[trial][:, channels[1]] > 0
            axis.plot(time_ms[steps], targets[trial][steps, channels[1]] + offset, "o",
                      color=colors[1])
            axis.plot(time_ms, dataset[schema.INPUTS].values[trial][:, 0] * 0.3 + offset,
                      color="0.7", lw=0.8)
        else:
            for channel in range(min(outputs.shape[-1], 4)):
                color = colors[channel % len(colors)]
                axis.plot(time_ms, outputs[trial][:, channel] + offset, color=color)
                axis.plot(time_ms, targets[trial][:, channel] + offset, "--", color=color)
        offset += 3.0
    axis.set_xlabel("time [ms]")
    axis.set_title("test trials (offset): outputs solid, targets dashed/dots", fontsize=9)
    axis.set_yticks([])


def plot_analysis(dataset: xr.Dataset, label: str, path: str | os.PathLike) -> None:
    """The panels an analysis dataset has: autocorrelations with their fits and the
    distribution of unit timescales; PCA trajectories with fixed/slow points; the limit
    cycle / slow point ratio of each trial; the robustness panels (`plot_robustness`)."""
    from .analysis.timescales import double_exponential, single_exponential
    plt = pyplot()
    panels = []
    if "autocorrelation" in dataset:
        panels += ["autocorrelation", "taus"]
    if "projections" in dataset:
        panels.append("pca")
    if "mechanism_ratio" in dataset:
        panels.append("mechanism")
    panels += [name for name, variable in ROBUSTNESS_PANELS if variable in dataset]
    if not panels:
        raise InputError("no analysis results to plot", file=label)
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    if "autocorrelation" in axes:
        axis = axes["autocorrelation"]
        lag = dataset["lag"].values
        units_of_lag = dataset["lag"].attrs.get(schema.ATTR_UNITS, "step")
        scale = 1e3 if units_of_lag == "second" else 1.0
        for unit in range(min(5, dataset.sizes.get(schema.UNIT, 0))):
            axis.plot(lag * scale, dataset["autocorrelation"].isel({schema.UNIT: unit}),
                      color="0.75", lw=0.8)
        axis.plot(lag * scale, dataset["population_autocorrelation"], "k.", label="population")
        fine = np.linspace(lag[0], lag[-1], 200)
        if str(dataset["population_fit_model"].values) == "double":
            fit = double_exponential(fine, 1.0, float(dataset["population_weight_fast"]),
                                     float(dataset["population_tau_fast"]),
                                     float(dataset["population_tau_slow"]))
        else:
            fit = single_exponential(fine, 1.0, float(dataset["population_tau_single"]))
        axis.plot(fine * scale, fit, "r-", label=f"fit, tau_net = "
                  f"{float(dataset['network_tau']) * scale:.3g} "
                  f"{'ms' if scale == 1e3 else 'steps'}")
        axis.set_xlabel(f"lag [{'ms' if scale == 1e3 else 'steps'}]")
        axis.set_ylabel("autocorrelation")
        axis.legend(fontsize=7)
        axis = axes["taus"]
        taus = dataset["tau"].values * scale
        axis.hist(taus[np.isfinite(taus)], bins=20, color="C0")
        axis.axvline(float(dataset["network_tau"]) * scale, color="r", label="network")
        axis.set_xlabel(f"unit timescale tau [{'ms' if scale == 1e3 else 'steps'}]")
        axis.set_ylabel("units")
        axis.legend(fontsize=7)
    if "pca" in axes:
        axis = axes["pca"]
        projections = dataset["projections"]
        for trial in range(projections.sizes[schema.TRIAL]):
            path_ = projections.isel({schema.TRIAL: trial})
            axis.plot(path_.isel(component=0), path_.isel(component=1), lw=0.8)
        variable = dataset.attrs.get("variable")
        point = f"point_{variable}"
        if point in dataset and dataset[point].sizes[schema.UNIT] == \
                dataset["components"].sizes[schema.UNIT]:
            centered = dataset[point].values - dataset["mean_activity"].values
            on_pcs = centered @ dataset["components"].values[:2].T
            stable = dataset["stable"].values.astype(bool)
            axis.plot(on_pcs[stable, 0], on_pcs[stable, 1], "ko", label="stable point")
            axis.plot(on_pcs[~stable, 0], on_pcs[~stable, 1], "o", mfc="none", mec="k",
                      label="unstable point")
            axis.legend(fontsize=7)
        ratio = dataset["explained_variance_ratio"].values
        axis.set_xlabel(f"PC1 ({ratio[0]:.0%})")
        axis.set_ylabel(f"PC2 ({ratio[1]:.0%})" if ratio.size > 1 else "PC2")
        axis.set_title(f"participation ratio {float(dataset['participation_ratio']):.2f}",
                       fontsize=9)
    if "mechanism" in axes:
        axis = axes["mechanism"]
        ratio = dataset["mechanism_ratio"].values
        kinds = dataset["mechanism"].values
        trials = np.arange(ratio.size)
        for kind, color, marker in (("limit_cycle", "C3", "o"), ("slow_point_manifold", "C0", "s")):
            chosen = kinds == kind
            if chosen.any():
                axis.scatter(trials[chosen], ratio[chosen], color=color, marker=marker,
                             label=kind.replace("_", " "))
        axis.axhline(float(dataset.attrs.get("threshold", 0.5)), color="k", ls="--", lw=0.8)
        axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("trial")
        axis.set_ylabel("power near DC (< 0.5: limit cycle)")
        axis.legend(fontsize=7)
        periods = dataset["period"].values
        if np.isfinite(periods).any():
            unit = dataset["period"].attrs.get(schema.ATTR_UNITS, "second")
            median = np.nanmedian(periods)
            text = f"{median * 1e3:.3g} ms" if unit == "second" else f"{median:.3g} {unit}"
            axis.set_title(f"{np.isfinite(periods).sum()}/{periods.size} limit cycles, "
                           f"period {text}", fontsize=9)
        else:
            axis.set_title("slow-point manifolds", fontsize=9)
    plot_robustness(dataset, axes)
    figure.suptitle(f"{label}: analysis of model '{dataset.attrs.get(schema.ATTR_MODEL_NAME, '?')}'"
                    f" ({dataset.attrs.get('variable', '')})", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


#: robustness panels and the variable each draws (`bioplast.analysis.robustness`)
ROBUSTNESS_PANELS = (("ablation", "ablation_accuracy"), ("perturbation", "perturbation_accuracy"),
                     ("recovery", "updates_to_recover"),
                     ("generalization", "generalization_accuracy"))


def plot_robustness(dataset: xr.Dataset, axes: dict) -> None:
    """Draw the robustness panels of ``axes`` (panel name -> matplotlib axis): accuracy of
    the newest head as units are silenced (timescale orders in colour, random orders in
    grey with their mean in black); accuracy after weight noise (mean over draws, their
    range shaded); the updates to recover (x: a draw that did not within the budget);
    accuracy against N, with the trained and last passed N marked."""
    if "ablation" in axes:
        axis, accuracy = axes["ablation"], dataset["ablation_accuracy"]
        newest = accuracy.isel({schema.HEAD: int(accuracy.attrs["newest_head"])})
        counts = dataset["silenced"].values
        randoms = [str(o) for o in dataset["ablation_order"].values if str(o).startswith("random")]
        for order, color in (("fastest_first", "C0"), ("slowest_first", "C3")):
            if order in dataset["ablation_order"].values:
                axis.plot(counts, newest.sel(ablation_order=order), "o-", color=color,
                          label=order.replace("_", " ") + " (tau)")
        for order in randoms:
            axis.plot(counts, newest.sel(ablation_order=order), color="0.7", lw=0.8)
        axis.plot(counts, newest.sel(ablation_order=randoms).mean("ablation_order"), "k-",
                  label=f"random (mean of {len(randoms)})")
        _accuracy_axis(axis, "units silenced", accuracy.attrs["trained_n"])
    if "perturbation" in axes:
        axis, accuracy = axes["perturbation"], dataset["perturbation_accuracy"]
        newest = accuracy.isel({schema.HEAD: int(accuracy.attrs["newest_head"])})
        scales = dataset["noise_scale"].values
        axis.plot(scales, newest.mean("repeat"), "o-", color="C2", label="mean over draws")
        axis.fill_between(scales, newest.min("repeat"), newest.max("repeat"), color="C2",
                          alpha=0.2)
        _noise_axis(axis, scales)
        _accuracy_axis(axis, "noise norm / weight norm", accuracy.attrs["trained_n"])
    if "recovery" in axes:
        axis, updates = axes["recovery"], dataset["updates_to_recover"]
        scales = dataset["noise_scale"].values
        budget = updates.attrs["recovery_budget"]
        axis.plot(scales, updates.mean("repeat", skipna=True), "o-", color="C4",
                  label="mean of draws that recovered")
        failed = ~np.isfinite(updates.values)
        if failed.any():
            axis.plot(np.broadcast_to(scales[:, None], failed.shape)[failed],
                      np.full(failed.sum(), budget), "x", color="k",
                      label=f"not within {budget} updates")
        axis.axhline(budget, color="0.8", lw=0.8)
        _noise_axis(axis, scales)
        axis.set_xlabel("noise norm / weight norm")
        axis.set_ylabel(f"'{updates.attrs['rule']}' updates to recover")
        axis.legend(fontsize=7)
    if "generalization" in axes:
        axis, accuracy = axes["generalization"], dataset["generalization_accuracy"]
        axis.plot(dataset["generalization_n"], accuracy, "o-", color="C1")
        axis.axvline(accuracy.attrs["trained_n"], color="k", ls="--", lw=0.8,
                     label=f"trained N = {accuracy.attrs['trained_n']}")
        if accuracy.attrs["last_passed_n"] >= 0:
            axis.axvline(accuracy.attrs["last_passed_n"], color="k", ls=":", lw=0.8,
                         label=f"last passed N = {accuracy.attrs['last_passed_n']}")
        _accuracy_axis(axis, "memory length N", None)


def _accuracy_axis(axis, xlabel: str, trained_n) -> None:
    axis.axhline(0.5, color="0.8", lw=0.8)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("test accuracy" + (f" (head of N = {trained_n})"
                                       if trained_n is not None and trained_n >= 0 else ""))
    axis.legend(fontsize=7)


def _noise_axis(axis, scales: np.ndarray) -> None:
    """A log axis that still shows the noise size 0 (linear below the smallest size)."""
    positive = scales[scales > 0]
    if positive.size:
        axis.set_xscale("symlog", linthresh=float(positive.min()))
        axis.set_xlim(-0.5 * float(positive.min()), 2 * float(positive.max()))
