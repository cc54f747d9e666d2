"""The ``bioplast`` command line (DESIGN section 8).

Exit codes: 0 success; 2 bad input (one line naming the file and the key or line);
1 a run that failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import shlex
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from . import __version__, schema
from .errors import BioplastError, BioplastWarning, CapabilityError, InputError

EPILOG_SIMULATE = """\
inputs: without --inputs, inputs are i.i.d. normal numbers N(0, input_std^2), one per
trial, step and input channel, drawn from --seed (--trials x --steps). --inputs takes a
.npy array shaped (trial, time, input) or a netCDF file with a variable 'inputs' with
dims (trial, time, input). A result file (.nc) as SOURCE re-simulates it: its model text,
parameters, initial states and inputs (unless --inputs is given).
"""


def _scalar(text: str):
    """A command-line value as YAML reads it, with numbers such as ``1e-3`` (text in YAML
    1.1) read as numbers."""
    from .yamlfile import yaml_value
    try:
        value = yaml_value(text, "--set") if text.strip() else ""
    except InputError as error:
        if error.message.startswith("malformed YAML"):
            return text.strip()
        raise
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+",
                                               value.strip()):
        return float(value)
    return value


def _parse_overrides(items, flag: str) -> dict:
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected KEY=VALUE, got {item!r}", key=flag)
        overrides[key.strip()] = _scalar(value)
    return overrides


def _read_inputs(path: str) -> np.ndarray:
    from .results import file_inputs, load
    if path.endswith(".npy"):
        return _read_npy(path)
    return file_inputs(load(path), path)


def _read_npy(path: str) -> np.ndarray:
    """A numeric ``.npy`` array, its header checked against the file's size and the memory
    available before the data is read; never unpickles."""
    from .files import check_regular_file
    from .limits import check_memory
    check_regular_file(path, ".npy file")
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            data_bytes = os.fstat(handle.fileno()).st_size - handle.tell()
    except (OSError, ValueError, SyntaxError, TypeError):
        raise InputError("not a .npy array file (bad header)", file=path) from None
    if dtype.kind not in "biuf":
        raise InputError(f"holds {dtype} values; inputs must be real numbers (files holding "
                         "Python objects are not read)", file=path)
    claimed = float(np.prod([float(n) for n in shape])) * dtype.itemsize
    if claimed != data_bytes:
        raise InputError(f"the header says shape {tuple(shape)} ({claimed:.0f} bytes) but "
                         f"the file holds {data_bytes} bytes of data: damaged", file=path)
    check_memory(2 * claimed, f"the inputs of shape {tuple(shape)}", file=path)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        raise InputError("not a numeric .npy array", file=path) from None


def _say(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def cmd_simulate(args) -> int:
    from .files import check_writable, refuse_overwrite
    from .model import load_model
    from .results import (load, save, stored_initial_state, stored_inputs, stored_model,
                          stored_noise, stored_params, stored_seed)
    from .simulation import check_inputs, check_simulation_size, simulate

    overrides = _parse_overrides(args.set, "--set")
    params = initial_state = inputs = None
    seed, noise = args.seed, args.noise
    if args.source.endswith(".nc"):
        result = load(args.source)
        fixed = [k for k in overrides if k in ("n_units", "n_inputs", "n_outputs")]
        if fixed:
            raise InputError(f"cannot change {', '.join(fixed)} when re-simulating a result "
                             "(its parameters have their shapes)", file=args.source,
                             key="--set")
        model = stored_model(result, args.source, **overrides)
        # stored parameters, except those --set gives a new value
        overridden = [name for name in model.params if name in overrides]
        fresh = model.init_params(0) if overridden else {}
        params = stored_params(result, model, args.source,
                               replaced={name: fresh[name] for name in overridden})
        initial_state = stored_initial_state(result, model, args.source)
        if args.trials is None and args.steps is None:
            inputs = stored_inputs(result, model, args.source)
        if seed is None:
            seed = stored_seed(result, args.source)
        if noise is None:
            noise = stored_noise(result, args.source)
        sources = [args.source]
    else:
        model = load_model(Path(args.source), **overrides)
        sources = [model.file]
    refuse_overwrite({"-o": args.output}, [*sources, args.inputs])
    check_writable(Path(args.output))
    seed = 0 if seed is None else seed
    noise = True if noise is None else noise
    if args.inputs:
        inputs = check_inputs(model, _read_inputs(args.inputs), where=args.inputs)
    if inputs is None:
        n_trials, n_steps = args.trials or 8, args.steps or 200
        check_simulation_size(model, n_trials, n_steps, key="--trials x --steps")
        rng = np.random.default_rng([seed, 1])
        inputs = rng.normal(0.0, args.input_std, size=(n_trials, n_steps, model.n_inputs))
    if initial_state and next(iter(initial_state.values())).shape[-2] != inputs.shape[-3]:
        initial_state = None  # other trials: draw initial states from the model
    options = _backend_options(args)
    record = args.record.split(",") if args.record else None
    unknown = [name for name in record or () if name not in model.recordable]
    if unknown:
        raise InputError(f"cannot record {', '.join(unknown)} (recordable: "
                         f"{', '.join(model.recordable)})", key="--record")
    check_simulation_size(model, inputs.shape[-3], inputs.shape[-2], record=record,
                          n_members=inputs.shape[0] if inputs.ndim == 4 else None,
                          key="--trials x --steps" if not args.inputs else "--inputs")
    _say(args, f"simulating '{model.name}' ({model.n_units} units) on {args.backend}"
               f"{'/' + options.get('target', 'numpy') if args.backend == 'brian2' else ''}: "
               f"{inputs.shape[-3]} trials x {inputs.shape[-2]} steps of "
               f"{model.dt * 1e3:g} ms ...")
    started = time.perf_counter()
    dataset = simulate(model, params, inputs, args.backend, initial_state=initial_state,
                       record=record, noise=noise, seed=seed,
                       command=shlex.join(["bioplast", *sys.argv[1:]]),
                       progress=not args.quiet, **options)
    save(dataset, args.output)
    if dataset.attrs[schema.ATTR_STATUS] == schema.STATUS_DIVERGED:
        print(f"bioplast: diverged: the simulation reached NaN or inf; wrote {args.output}",
              file=sys.stderr)
        return 1
    _say(args, f"done in {time.perf_counter() - started:.1f} s: wrote {args.output}")
    return 0


def _backend_options(args) -> dict:
    """The options of the chosen backend; options of the other backend are an error."""
    from .backends import spec
    given = {o.name: getattr(args, o.name) for options in spec.OPTIONS.values()
             for o in options}
    wanted = [o.name for o in spec.OPTIONS[args.backend]]
    wrong = [f"--{k}" for k, v in given.items() if v is not None and k not in wanted]
    if wrong:
        raise InputError(f"{', '.join(wrong)} does not apply to --backend {args.backend}")
    if args.device is not None:
        from .backends.torch import torch_device
        try:
            torch_device(args.device)
        except InputError as error:
            raise InputError(error.message, key="--device") from None
    return {k: given[k] for k in wanted if given[k] is not None}


def cmd_run(args) -> int:
    from .files import check_output_path, check_writable, refuse_overwrite
    from .protocol import load_protocol
    from .results import load, save, stored_protocol, training_dataset
    from .training import checkpoint_is_complete, checkpoint_path, read_checkpoint, train

    if args.resume and args.overwrite:
        raise InputError("--resume continues the checkpoint, --overwrite starts over: give "
                         "one", key="--overwrite")
    settings = _parse_overrides(args.set, "--set")
    if args.protocol.endswith(".nc"):
        protocol = stored_protocol(load(args.protocol), args.protocol, settings)
        sources = [args.protocol]
    else:
        protocol = load_protocol(Path(args.protocol), settings)
        sources = [args.protocol, protocol.model.file]
    output = Path(args.output or f"{protocol.schema.name}.nc")
    checkpoint = checkpoint_path(output)
    refuse_overwrite({"-o": output, "the checkpoint": checkpoint}, sources)
    check_writable(output)
    check_output_path(checkpoint)
    if args.resume and not checkpoint.exists():
        _say(args, f"no checkpoint at {checkpoint}: starting from the beginning")
    if checkpoint.exists() and not args.resume and not args.overwrite:
        saved = read_checkpoint(checkpoint)
        if not checkpoint_is_complete(saved):
            raise InputError(f"holds an unfinished run (epoch {saved.get('next_epoch', '?')} "
                             f"of its budget): continue it with --resume, or start over with "
                             "--overwrite", file=str(checkpoint))
    result = train(protocol, checkpoint=checkpoint, resume=args.resume,
                   progress=not args.quiet)
    save(training_dataset(result, command=shlex.join(["bioplast", *sys.argv[1:]])), output)
    if result.status == schema.STATUS_COMPLETE:
        _say(args, f"{result.message} after {result.info['epochs_completed']} epochs: "
                   f"wrote {output}")
        return 0
    kept = f"; last good checkpoint: {checkpoint}" if checkpoint.exists() else \
        "; no checkpoint was written yet"
    print(f"bioplast: {result.status}: {result.message}; wrote the result so far to "
          f"{output}{kept}", file=sys.stderr)
    return 1 if result.status == schema.STATUS_DIVERGED else 130


def _read_recording(path: str, args):
    """A netCDF file (``--select``-ed), or an NWB file cut into trials by the ``--nwb-*``
    options."""
    from .results import choose_network, load
    if Path(path).suffix.lower() != ".nwb":
        return choose_network(load(path), _parse_overrides(getattr(args, "select", None),
                                                           "--select"), path)
    from .analysis.nwb import read_nwb
    return read_nwb(path, source=args.nwb_source, bin_size=args.bin, window=args.window,
                    align=args.align)


def cmd_convert(args) -> int:
    from .files import check_writable, refuse_overwrite
    from .results import save
    if Path(args.file).suffix.lower() != ".nwb":
        raise InputError("convert reads NWB files (.nwb)", file=args.file)
    refuse_overwrite({"-o": args.output}, [args.file])
    check_writable(Path(args.output))
    dataset = _read_recording(args.file, args)
    dataset.attrs[schema.ATTR_COMMAND] = shlex.join(["bioplast", *sys.argv[1:]])
    save(dataset, args.output)
    sizes = ", ".join(f"{dim}={size}" for dim, size in dataset["activity"].sizes.items())
    _say(args, f"wrote {args.output}: activity ({sizes})")
    return 0


def cmd_export(args) -> int:
    from .export import export_format, recorded_activity, write_csv, write_nwb
    from .files import check_writable, refuse_overwrite
    from .results import choose_network, load
    if Path(args.result).suffix.lower() == ".nwb":
        raise InputError("export writes a bioplast result (.nc) as NWB or CSV; this is "
                         "already NWB", file=args.result)
    output_format = export_format(args.output, args.format)
    refuse_overwrite({"-o": args.output}, [args.result])
    check_writable(Path(args.output))
    dataset = choose_network(load(args.result), _parse_overrides(args.select, "--select"),
                             args.result)
    recorded = recorded_activity(dataset, args.variable, args.result)
    if output_format == "nwb":
        write_nwb(recorded, args.output, args.result,
                  command=shlex.join(["bioplast", *sys.argv[1:]]))
    else:
        write_csv(recorded, args.output, args.result)
    sizes = ", ".join(f"{dim}={size}" for dim, size in recorded.traces.sizes.items())
    _say(args, f"wrote {args.output}: '{recorded.name}' ({sizes}) and "
               f"{len(recorded.conditions)} condition label(s)")
    if output_format == "nwb":
        _say(args, "compare the model with it: " + shlex.join([
            "bioplast", "compare", args.result, args.output, "--nwb-source",
            recorded.name]))
    return 0


def _parse_grid(items) -> dict:
    """``--grid key.path=v1,v2,...`` (values read as YAML scalars) as ``{key: [values]}``."""
    grid = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise InputError(f"expected KEY.PATH=V1,V2,..., got {item!r}", key="--grid")
        if key in grid:
            raise InputError(f"grid key '{key}' given twice", key="--grid")
        grid[key] = [_scalar(value) for value in values.split(",")]
    return grid


def _check_sweep_arguments(args, settings: dict, outputs: dict):
    """The protocol of a ``sweep`` or ``compare-rules`` loaded with ``settings``, after the
    checks of its workers, threads and ``outputs`` (``{"-o": path, ...}``)."""
    from .files import check_writable, refuse_overwrite
    from .protocol import load_protocol
    from .sweep import shard_directory
    cores = os.cpu_count() or 1
    if not args.scheduler and args.workers * (args.threads or 1) > 4 * cores:
        raise InputError(f"{args.workers} workers x {args.threads} threads on a machine with "
                         f"{cores} cores (keep workers x threads <= cores; at most "
                         f"{4 * cores})", key="--workers" if args.workers > 1 else "--threads")
    if not Path(args.protocol).is_file():
        raise InputError("no such protocol file", file=args.protocol)
    protocol = load_protocol(Path(args.protocol), settings)
    refuse_overwrite(outputs, [args.protocol, protocol.model.file],
                     directories={"the shard directory": shard_directory(Path(args.output))})
    for path in outputs.values():
        check_writable(path)
    return protocol


@contextlib.contextmanager
def _sweep_progress(args):
    """``(progress, notify)`` for `bioplast.sweep.run_sweep`: a bar of the grid points,
    made at the first report (errors found before it stand alone), and notices on stderr."""
    from tqdm.auto import tqdm
    bars = []

    def progress(done, total):
        if not bars:
            bars.append(tqdm(desc="sweep", unit="point", disable=args.quiet))
        bars[0].total = total
        bars[0].n = done
        bars[0].refresh()
    try:
        yield progress, lambda message: print(f"bioplast: {message}", file=sys.stderr,
                                              flush=True)
    finally:
        for bar in bars:
            bar.close()


def _statuses(dataset, output) -> tuple[int, str]:
    """How many networks a sweep has and how they ended (``"3 complete, 1 diverged"``)."""
    from .results import network_values
    statuses = network_values(dataset, schema.ATTR_STATUS, str(output)).ravel()
    return statuses.size, ", ".join(f"{n} {s}" for s, n in
                                    zip(*np.unique(statuses, return_counts=True)))


def cmd_sweep(args) -> int:
    from .sweep import run_sweep
    grid = _parse_grid(args.grid)
    settings = _parse_overrides(args.set, "--set")
    output = Path(args.output)
    _check_sweep_arguments(args, settings, {"-o": output})
    with _sweep_progress(args) as (progress, notify):
        dataset = run_sweep(args.protocol, grid, output, base_settings=settings,
                            scheduler=args.scheduler, workers=args.workers,
                            threads=args.threads, max_members=args.max_members,
                            progress=progress, notify=notify)
    count, statuses = _statuses(dataset, output)
    _say(args, f"{count} grid points ({statuses}): wrote {output}")
    return 0


def cmd_compare_rules(args) -> int:
    from .compare_rules import check_rules, compare_rules, draw
    from .plotting import figure_format
    rules = check_rules([rule.strip() for rule in args.rules.split(",") if rule.strip()])
    settings = _parse_overrides(args.set, "--set")
    output = Path(args.output)
    figure = Path(args.plot) if args.plot else output.with_suffix(".png")
    figure_format(figure, default="")  # before training; a figure name needs a suffix here
    _check_sweep_arguments(args, settings, {"-o": output, "--plot": figure})
    started = time.perf_counter()
    with _sweep_progress(args) as (progress, notify):
        dataset = compare_rules(args.protocol, rules, args.seeds, output, settings=settings,
                                command=shlex.join(["bioplast", *sys.argv[1:]]),
                                progress=progress, notify=notify, scheduler=args.scheduler,
                                workers=args.workers, threads=args.threads,
                                max_members=args.max_members)
    draw(dataset, figure)
    _say(args, f"{len(rules)} rules x {args.seeds} seeds ({_statuses(dataset, output)[1]}) in "
               f"{time.perf_counter() - started:.1f} s: wrote {output} and {figure}")
    return 0


def cmd_analyze(args) -> int:
    from .analysis.analyze import analyze
    from .analysis.robustness import PAPER_NOISE, RobustnessSettings
    from .files import check_writable, refuse_overwrite
    from .results import save
    refuse_overwrite({"-o": args.output}, [args.file])
    dataset = _read_recording(args.file, args)
    chosen = {"do_timescales": args.timescales, "do_dynamics": args.dynamics,
              "do_geometry": args.geometry, "do_ablation": args.ablation,
              "do_perturbation": args.perturbation, "do_generalization": args.generalization}
    if not any(chosen.values()):  # the analyses of activity (robustness only on request)
        chosen.update(do_timescales=True, do_dynamics=True, do_geometry=True)
    robustness = RobustnessSettings(
        ablation_steps=args.ablation_steps, ablation_by=args.ablation_by,
        repeats=args.repeats,
        noise=tuple(args.noise) if args.noise is not None else PAPER_NOISE,
        perturb=tuple(args.perturb) if args.perturb else None,
        recovery_updates=args.recovery_updates, recovery_every=args.recovery_every,
        beyond=args.beyond)
    check_writable(Path(args.output))
    started = time.perf_counter()
    result = analyze(dataset, **chosen, variable=args.variable, steps=args.steps,
                     burn_in=args.burn_in, trials=args.trials, drive=args.drive,
                     max_lag=args.max_lag, seed=args.seed, where=args.file,
                     robustness=robustness, progress=not args.quiet)
    result.attrs[schema.ATTR_COMMAND] = shlex.join(["bioplast", *sys.argv[1:]])
    save(result, args.output)
    _note_dropped(result)
    _say(args, f"analysed {args.file} ("
               + ", ".join(k.removeprefix("do_") for k, v in chosen.items() if v)
               + f") in {time.perf_counter() - started:.1f} s: wrote {args.output}")
    return 0


def _note_dropped(result) -> None:
    """What an analysis left out (non-finite samples), as a warning after the work."""
    if result.attrs.get("dropped"):
        warnings.warn(str(result.attrs["dropped"]), BioplastWarning)


def cmd_compare(args) -> int:
    from .analysis.similarity import compare
    from .files import check_writable, refuse_overwrite
    from .results import provenance, save
    if args.output:
        refuse_overwrite({"-o": args.output}, [args.result, args.recording])
        check_writable(Path(args.output))
    model, recording = _read_recording(args.result, args), _read_recording(args.recording, args)
    metrics = args.metric or ["procrustes", "cca", "cka", "rsa"]
    result = compare(model, recording, metrics=metrics, model_variable=args.variable,
                     recording_variable=args.recording_variable,
                     model_condition=args.condition, recording_condition=args.condition
                     if args.recording_condition is None else args.recording_condition,
                     folds=args.folds, shuffles=args.shuffles, seed=args.seed,
                     where=(args.result, args.recording))
    _note_dropped(result)
    print(f"{args.result} vs {args.recording}: {len(result.attrs['conditions'])} conditions, "
          f"{result.attrs['n_time']} time points")
    for metric in result["metric"].values:
        row = result.sel(metric=metric)
        kind = "distance" if int(row["is_distance"]) else "similarity"
        print(f"  {metric:<11} {kind:<10} {float(row['value']):.4f}  cross-validated "
              f"{float(row['cross_validated']):.4f} +- {float(row['cross_validated_std']):.4f}"
              f"  shuffled {float(row['shuffled_mean']):.4f} +- "
              f"{float(row['shuffled_std']):.4f}  p = {float(row['p_value']):.3g}")
    if args.output:
        result.attrs.update(provenance(kind="comparison", model_file=args.result,
                                       recording_file=args.recording,
                                       command=shlex.join(["bioplast", *sys.argv[1:]])))
        save(result, args.output)
        _say(args, f"wrote {args.output}")
    return 0


def cmd_info(args) -> int:
    from .results_header import read_header
    for line in info_lines(read_header(args.file), args.file):
        print(line)
    return 0


def info_lines(dataset, where: str):
    """The lines ``bioplast info`` prints for a result: a `bioplast.results_header.Header`
    or an `xarray.Dataset` (the same lines for both); errors in the stored attrs name
    ``where`` and the attribute."""
    from .results_header import stored_int, stored_json
    attrs = {key: (value if isinstance(value, str) else
                   value.item() if isinstance(value, np.ndarray) and value.size == 1 else value)
             for key, value in dataset.attrs.items()}
    kind = attrs.get(schema.ATTR_KIND, "dataset")
    head = f"{where}: {kind}"
    if schema.ATTR_MODEL_NAME in attrs:
        head += f" of model '{attrs[schema.ATTR_MODEL_NAME]}'"
    if schema.ATTR_BACKEND in attrs:
        options = stored_json(dataset, schema.ATTR_BACKEND_OPTIONS, where, {})
        detail = ", ".join(f"{k}={v}" for k, v in options.items())
        head += f" on {attrs[schema.ATTR_BACKEND]}" + (f" ({detail})" if detail else "")
    if schema.ATTR_STATUS in attrs:
        head += f" [status: {attrs[schema.ATTR_STATUS]}]"
    yield head
    if "protocol_name" in attrs:
        resumed = stored_int(dataset, "resumed_from_epoch", where, -1, minimum=-1)
        yield (f"  protocol '{attrs['protocol_name']}', task '{attrs.get('task', '?')}', rule "
               f"{_shown_rule(dataset, attrs, where)}: {attrs.get('stop_reason', '?')} after "
               f"{attrs.get('epochs_completed', '?')} epochs"
               + (f" (resumed at epoch {resumed})" if resumed >= 0 else ""))
    facts = []
    for key, label in ((schema.ATTR_CREATED, "created"), (schema.ATTR_VERSION, "bioplast"),
                       (schema.ATTR_SEED, "seed"), (schema.ATTR_METHOD, "method")):
        if key in attrs:
            facts.append(f"{label} {attrs[key]}")
    if schema.ATTR_DT in attrs:
        dt = attrs[schema.ATTR_DT]
        facts.append(f"dt {dt * 1e3:g} ms" if isinstance(dt, (int, float)) else f"dt {dt!r:.40}")
    if schema.ATTR_NOISE in attrs:
        noise = stored_int(dataset, schema.ATTR_NOISE, where, 1, maximum=1)
        facts.append("noise " + ("on" if noise else "off"))
    if facts:
        yield "  " + ", ".join(facts)
    yield "  dims: " + ", ".join(f"{k}={v}" for k, v in dataset.sizes.items())
    width = max((len(str(n)) for n in dataset.data_vars), default=0)
    for name, variable in dataset.data_vars.items():
        units = variable.attrs.get(schema.ATTR_UNITS, "")
        dims = "(" + ", ".join(map(str, variable.dims)) + ")"
        yield f"  {str(name):<{width}}  {dims:<32} {units}"
    if schema.ATTR_COMMAND in attrs:
        yield f"  command: {attrs[schema.ATTR_COMMAND]}"


def _shown_rule(dataset, attrs: dict, where: str) -> str:
    """The rule of a result as ``info`` shows it: ``'bptt'``; for a sweep over ``rule.name``
    (where each network has its own, in ``network_rule``) the grid's rules."""
    from .results_header import stored_json
    if schema.ATTR_RULE in attrs:
        return f"'{attrs[schema.ATTR_RULE]}'"
    rules = stored_json(dataset, "sweep_grid", where, {}).get("rule.name")
    if isinstance(rules, list):
        return ", ".join(f"'{rule}'" for rule in rules)
    return "per network" if f"network_{schema.ATTR_RULE}" in dataset.variables else "'?'"


def cmd_list(args) -> int:
    from .model_files import describe_model, list_models
    from .registry import BACKENDS, REGULARIZERS, RULES, TASKS
    categories = ["models", "tasks", "rules", "regularizers", "backends"]
    what = args.what or categories
    unknown = [w for w in what if w not in categories]
    if unknown:
        raise InputError(f"cannot list {', '.join(unknown)} (choose from "
                         f"{', '.join(categories)})")
    for category in what:
        print(f"{category}:")
        if category == "models":
            for name in list_models():
                try:
                    print(f"  {name:<16} {describe_model(name)}")
                except InputError as error:
                    print(f"  {name:<16} (invalid: {error})")
        elif category in ("tasks", "rules", "regularizers"):
            registry = {"tasks": TASKS, "rules": RULES, "regularizers": REGULARIZERS}[category]
            for name in registry.names():
                summary = registry.summary(name)
                options = ", ".join(f"{k}: {v}" for k, v in summary.options.items())
                print(f"  {name:<22} {summary.description}")
                print(f"  {'':<22} options: {options}")
        elif category == "backends":
            for name in BACKENDS.names():
                capabilities, choices = _backend_offer(name)
                options = "; ".join(f"{k}: {', '.join(map(str, v)) if v else 'any'}"
                                    for k, v in choices.items())
                print(f"  {name:<16} {', '.join(capabilities) or '-'}  (options: {options})")
    return 0


def _backend_offer(name: str) -> tuple[list[str], dict]:
    """A backend's capabilities as ``bioplast list`` names them and its option choices:
    from `bioplast.backends.spec` where it is declared (nothing imported), else from its
    class."""
    from .backends import spec
    from .registry import BACKENDS
    if name in spec.OPTIONS:
        flags = spec.flags(spec.CAPABILITIES[name])
        choices = spec.option_choices(name)
    else:
        backend = BACKENDS.get(name)
        flags = {c: getattr(backend, c) for c in ("differentiable", "supports_members")}
        choices = backend.option_choices
    return [flag.replace("_", " ") for flag, present in flags.items() if present], choices


def cmd_plot(args) -> int:
    from .files import check_writable, refuse_overwrite
    from .plotting import plot_analysis, plot_simulations, plot_training, split_networks
    from .results import load
    refuse_overwrite({"-o": args.output}, args.files)
    check_writable(Path(args.output))
    datasets = [load(path) for path in args.files]
    labels = [Path(p).name for p in args.files]
    for path, dataset in zip(args.files, datasets):
        _check_plottable(dataset, path)
    kinds = {"training" if d.attrs.get(schema.ATTR_KIND) == "sweep" else
             d.attrs.get(schema.ATTR_KIND) for d in datasets}
    if "analysis" in kinds:
        if len(datasets) > 1:
            raise InputError("plot one analysis file at a time", file=args.files[1])
        plot_analysis(datasets[0], labels[0], args.output)
    elif kinds == {"training"}:
        networks = [pair for label, dataset in zip(labels, datasets)
                    for pair in split_networks(dataset, label)]
        plot_training([d for _, d in networks], [label for label, _ in networks], args.output)
    elif "training" in kinds:
        raise InputError("cannot plot training and simulation results in one figure",
                         file=args.files[0])
    else:
        plot_simulations(datasets, labels, args.output, variable=args.variable,
                         trial=args.trial, n_units=args.units)
    _say(args, f"wrote {args.output}")
    return 0


#: what each kind of result must hold to be plotted
_PLOTTED = {"training": ("loss", "accuracy", "level"), "sweep": ("loss", "accuracy", "level")}


def _check_plottable(dataset, path: str) -> None:
    """InputError naming the file if a result lacks what its kind is plotted from."""
    kind = dataset.attrs.get(schema.ATTR_KIND)
    missing = [name for name in _PLOTTED.get(kind, ()) if name not in dataset]
    if missing:
        raise InputError(f"a {kind} result without {', '.join(missing)}: the file was edited "
                         "or damaged", file=path)
    if kind in _PLOTTED and schema.EPOCH not in dataset["loss"].dims:
        raise InputError(f"'loss' has dims {dataset['loss'].dims}, expected (..., epoch)",
                         file=path)
    if kind == "analysis":
        return
    if kind not in _PLOTTED and not any(
            v.dims[-3:] == (schema.TRIAL, schema.TIME, schema.UNIT)
            for v in dataset.data_vars.values()):
        raise InputError("nothing to plot: not a bioplast result, and no (trial, time, unit) "
                         "activity variable", file=path)


def build_parser() -> argparse.ArgumentParser:
    from .backends import spec  # light: options only
    parser = argparse.ArgumentParser(
        prog="bioplast", description="Rate networks as equations, on torch and Brian2.")
    parser.add_argument("--version", action="version", version=f"bioplast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text, **kwargs):
        command = sub.add_parser(name, help=help_text, description=help_text, **kwargs)
        command.add_argument("--quiet", action="store_true", help="no progress messages")
        command.add_argument("--debug", action="store_true",
                             help="show tracebacks and library warnings")
        return command

    def add_sweep_options(command):
        command.add_argument("--scheduler", metavar="ADDRESS",
                             help="a running Dask scheduler (default: a local cluster)")
        command.add_argument("--workers", type=_positive_int, default=2,
                             help="local cluster: worker processes (default 2)")
        command.add_argument("--threads", type=_positive_int, default=None,
                             help="torch threads per worker (default: cores // workers on a "
                                  "local cluster, 1 with --scheduler; keep workers x threads "
                                  "<= cores)")
        command.add_argument("--max-members", type=_positive_int, default=64,
                             help="largest ensemble of grid points trained in one task")

    def add_nwb_options(command):
        group = command.add_argument_group("NWB recordings (.nwb files; needs bioplast[nwb])")
        group.add_argument("--nwb-source", default="units", metavar="units|SERIES",
                           help="the units table's spikes or a TimeSeries by name")
        group.add_argument("--bin", type=_seconds, default=None, metavar="DURATION",
                           help="bin width, e.g. '10 ms' (default: 10 ms for spikes, a "
                                "TimeSeries' own sampling interval)")
        group.add_argument("--window", type=_window, metavar="START,STOP",
                           help="window around the alignment, e.g. '-100 ms,500 ms' "
                                "(default: from the alignment to the end of the shortest "
                                "trial)")
        group.add_argument("--align", default="start_time", metavar="COLUMN",
                           help="trials-table column with the alignment times")

    simulate = add("simulate", "simulate a model (or re-simulate a result file)",
                   epilog=EPILOG_SIMULATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    simulate.add_argument("source", metavar="MODEL.yaml|NAME|RESULT.nc")
    simulate.add_argument("-o", "--output", required=True, metavar="OUT.nc")
    simulate.add_argument("--backend", default="torch", choices=list(spec.OPTIONS))
    for backend, options in spec.OPTIONS.items():  # each backend's options as flags
        for option in options:
            simulate.add_argument(f"--{option.name}", choices=option.choices,
                                  help=f"{option.help} (--backend {backend}; default "
                                       f"{option.default})")
    simulate.add_argument("--trials", type=_positive_int, help="random inputs: trials (8)")
    simulate.add_argument("--steps", type=_positive_int, help="random inputs: steps (200)")
    simulate.add_argument("--input-std", type=_non_negative_float, default=1.0)
    simulate.add_argument("--inputs", metavar="FILE", help=".npy or .nc inputs")
    simulate.add_argument("--seed", type=_seed, default=None,
                          help="default 0 (or the result's)")
    simulate.add_argument("--record", metavar="VAR,VAR", help="variables to record")
    simulate.add_argument("--no-noise", dest="noise", action="store_false", default=None,
                          help="rand()/randn() at their means (0.5, 0), no xi")
    simulate.add_argument("--noise", dest="noise", action="store_true",
                          help="noise on (the default; for a result: as it was run)")
    simulate.add_argument("--set", action="append", metavar="KEY=VALUE",
                          help="model override, e.g. n_units=64 or 'tau=20 ms'")
    simulate.set_defaults(func=cmd_simulate)

    run = add("run", "train as a protocol file says (or re-run a training result)")
    run.add_argument("protocol", metavar="PROTOCOL.yaml|RESULT.nc")
    run.add_argument("-o", "--output", metavar="OUT.nc", help="default: NAME.nc")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="edit the protocol, e.g. training.epochs=5 or model.n_units=32")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint next to OUT.nc (OUT.nc.checkpoint.pt)")
    run.add_argument("--overwrite", action="store_true",
                     help="start over although the checkpoint holds an unfinished run (it is "
                          "replaced when this run writes its first checkpoint)")
    run.set_defaults(func=cmd_run)

    sweep = add("sweep", "train a protocol over a grid of settings on Dask (resumable)")
    sweep.add_argument("protocol", metavar="PROTOCOL.yaml")
    sweep.add_argument("--grid", action="append", required=True, metavar="KEY.PATH=V1,V2,...",
                       help="a grid key and its values, e.g. rule.optimizer.lr=0.01,0.1 "
                            "(repeat for more keys: their product is swept)")
    sweep.add_argument("-o", "--output", required=True, metavar="OUT.nc",
                       help="the stacked result; shards go to OUT.nc.shards/")
    sweep.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                       help="edit the protocol for every point")
    add_sweep_options(sweep)
    sweep.set_defaults(func=cmd_sweep)

    rules = add("compare-rules", "train a protocol under several learning rules and seeds "
                                 "(one sweep) and draw their comparison")
    rules.add_argument("protocol", metavar="PROTOCOL.yaml")
    rules.add_argument("--rules", required=True, metavar="RULE,RULE,...",
                       help="registered rules, e.g. bptt,eprop,rflo,node_perturbation (each "
                            "with its defaults or the protocol's rule_options.<rule>)")
    rules.add_argument("--seeds", type=_positive_int, default=4,
                       help="networks per rule, seeds seed, seed+1, ... (default 4)")
    rules.add_argument("-o", "--output", required=True, metavar="OUT.nc",
                       help="the comparison (dims rule, seed); shards go to OUT.nc.shards/")
    rules.add_argument("--plot", metavar="FIG.png",
                       help="the figure (default: OUT.png next to OUT.nc)")
    rules.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                       help="edit the protocol for every run")
    add_sweep_options(rules)
    rules.set_defaults(func=cmd_compare_rules)

    analyze_ = add("analyze", "timescales, dynamics and geometry of a result or a "
                              "recording; ablation, perturbation and generalization of a "
                              "training result")
    analyze_.add_argument("file", metavar="RESULT.nc|RECORDING.nc|RECORDING.nwb")
    analyze_.add_argument("-o", "--output", required=True, metavar="OUT.nc")
    analyze_.add_argument("--timescales", action="store_true")
    analyze_.add_argument("--dynamics", action="store_true")
    analyze_.add_argument("--geometry", action="store_true",
                          help="(none of the flags: these three)")
    analyze_.add_argument("--ablation", action="store_true",
                          help="training result: accuracy as units are silenced, in random "
                               "orders and by their tau (fastest or slowest first)")
    analyze_.add_argument("--perturbation", action="store_true",
                          help="training result: accuracy after Gaussian noise on the "
                               "recurrent weights, and the rule updates to recover")
    analyze_.add_argument("--generalization", action="store_true",
                          help="training result of a task with N: accuracy at N beyond "
                               "the trained one")
    analyze_.add_argument("--variable", help="activity to analyse (default: the readout's "
                                             "source, or the first (trial, time, unit) one)")
    analyze_.add_argument("--steps", type=_positive_int, default=10000,
                          help="timescales: steps of the driven run (after the burn-in)")
    analyze_.add_argument("--burn-in", type=_non_negative_int, default=500)
    analyze_.add_argument("--trials", type=_positive_int, default=10)
    analyze_.add_argument("--drive", default="auto",
                          choices=["auto", "task", "bits", "normal", "zero"],
                          help="timescales: inputs of the driven run (task: with the trial "
                               "statistics of the task the network was trained on; bits: "
                               "Bernoulli(0.5); normal: N(0, 1); auto: task for a training "
                               "result, else normal)")
    analyze_.add_argument("--max-lag", type=_positive_int, default=30,
                          help="timescales: lags fitted, in steps")
    analyze_.add_argument("--seed", type=_seed, default=0,
                          help="seed of the driven run, random unit orders and weight noise")
    analyze_.add_argument("--ablation-steps", type=_number(int, 2, strict=False), default=11,
                          help="ablation: counts of silenced units, evenly from 0 to all")
    analyze_.add_argument("--ablation-by", choices=["tau", "activity"], default="tau",
                          help="ablation: rank units by their tau parameter (the paper) or "
                               "by their activity's autocorrelation timescale (runs "
                               "--timescales)")
    analyze_.add_argument("--repeats", type=_positive_int, default=3,
                          help="ablation: random orders; perturbation: noise draws per size")
    analyze_.add_argument("--noise", type=_noise_list, metavar="EPS,EPS,...",
                          help="perturbation: noise norms relative to the weights' norm "
                               "(default: 0 and 10 sizes from 0.01 to 10, as the paper)")
    analyze_.add_argument("--perturb", action="append", metavar="PARAMETER",
                          help="perturbation: a parameter to perturb (repeat for more; "
                               "default: the recurrent couplings)")
    analyze_.add_argument("--recovery-updates", type=_non_negative_int,
                          help="perturbation: most rule updates to recover (default: the "
                               "protocol's steps_per_epoch)")
    analyze_.add_argument("--recovery-every", type=_positive_int, default=10,
                          help="perturbation: updates between accuracy checks")
    analyze_.add_argument("--beyond", type=_non_negative_int, default=10,
                          help="generalization: levels tested past the trained N")
    analyze_.add_argument("--select", action="append", metavar="DIM=VALUE",
                          help="one network of an ensemble or sweep, e.g. member=2 or lr=0.01")
    add_nwb_options(analyze_)
    analyze_.set_defaults(func=cmd_analyze)

    compare_ = add("compare", "similarity of a result's activity to a recording")
    compare_.add_argument("result", metavar="RESULT.nc")
    compare_.add_argument("recording", metavar="RECORDING.nc|RECORDING.nwb")
    compare_.add_argument("--metric", action="append",
                          choices=["procrustes", "cca", "cka", "rsa"],
                          help="repeat for several (default: all)")
    compare_.add_argument("--variable", help="the result's activity variable")
    compare_.add_argument("--recording-variable", help="the recording's activity variable")
    compare_.add_argument("--condition", help="condition labels along trial (both files)")
    compare_.add_argument("--recording-condition", help="the recording's condition labels")
    compare_.add_argument("--folds", type=_positive_int, default=2)
    compare_.add_argument("--shuffles", type=_non_negative_int, default=100)
    compare_.add_argument("--seed", type=_seed, default=0)
    compare_.add_argument("-o", "--output", metavar="OUT.nc", help="also save the numbers")
    compare_.add_argument("--select", action="append", metavar="DIM=VALUE",
                          help="one network of an ensemble or sweep (both files)")
    add_nwb_options(compare_)
    compare_.set_defaults(func=cmd_compare)

    convert = add("convert", "an NWB recording as a (trial, time, unit) netCDF file")
    convert.add_argument("file", metavar="RECORDING.nwb")
    convert.add_argument("-o", "--output", required=True, metavar="OUT.nc")
    add_nwb_options(convert)
    convert.set_defaults(func=cmd_convert)

    export = add("export", "a result's recorded trials as an NWB file or a CSV table")
    export.add_argument("result", metavar="RESULT.nc")
    export.add_argument("-o", "--output", required=True, metavar="OUT.nwb|OUT.csv")
    export.add_argument("--format", choices=["nwb", "csv"],
                        help="default: from the suffix of -o (.nwb, .csv)")
    export.add_argument("--variable", help="recorded activity to write (default: the "
                                           "readout's source, or the first (trial, time, "
                                           "unit) one)")
    export.add_argument("--select", action="append", metavar="DIM=VALUE",
                        help="one network of an ensemble or sweep, e.g. member=2")
    export.set_defaults(func=cmd_export)

    info = add("info", "summarize a netCDF file")
    info.add_argument("file", metavar="FILE.nc")
    info.set_defaults(func=cmd_info)

    listing = add("list", "list models, tasks, rules, regularizers and backends")
    listing.add_argument("what", nargs="*", metavar="models|tasks|rules|regularizers|backends")
    listing.set_defaults(func=cmd_list)

    plot = add("plot", "plot learning curves and test trials of training results, or the "
                       "recorded activity of simulation results")
    plot.add_argument("files", nargs="+", metavar="RESULT.nc")
    plot.add_argument("-o", "--output", required=True, metavar="FIG.png")
    plot.add_argument("--variable", help="recorded variable (default: the first state)")
    plot.add_argument("--trial", type=_non_negative_int, default=0)
    plot.add_argument("--units", type=_positive_int, default=4, help="number of units to draw")
    plot.set_defaults(func=cmd_plot)
    return parser


def _number(kind, minimum, strict):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value
    return parse


_positive_int = _number(int, 0, strict=True)


def _seconds(text: str) -> float:
    """A positive duration such as ``10 ms`` or ``0.01 second``, in seconds."""
    from .quantities import parse_quantity
    from brian2 import second
    try:
        value = parse_quantity(text, second.dim)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _window(text: str) -> tuple[float, float]:
    """``START,STOP`` durations in seconds, e.g. ``-100 ms,500 ms``."""
    from .quantities import parse_quantity
    from brian2 import second
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected START,STOP, got {text!r}")
    try:
        start, stop = (parse_quantity(part.strip(), second.dim) for part in parts)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not stop > start:
        raise argparse.ArgumentTypeError(f"STOP must be after START, got {text!r}")
    return start, stop
_non_negative_int = _number(int, 0, strict=False)


def _seed(text: str) -> int:
    from .limits import MAX_SEED
    value = _non_negative_int(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2**63 - 1, got {text}")
    return value


_non_negative_float = _number(float, 0.0, strict=False)


def _noise_list(text: str) -> list[float]:
    """Comma-separated noise sizes, each a finite number >= 0."""
    return [_non_negative_float(part.strip()) for part in text.split(",")]


def main(argv=None) -> int:
    # idle OpenMP threads sleep instead of spinning (read once, when torch starts its
    # runtime: before anything imports torch); see bioplast.threads
    from .threads import passive_wait
    passive_wait()
    # Brian2 installs an excepthook that calls every uncaught error a Brian2 bug, and a
    # SIGINT handler that fails when SIGINT was ignored (background jobs): Ctrl-C or
    # kill -INT stops bioplast with KeyboardInterrupt, which commands turn into results
    sys.excepthook = sys.__excepthook__
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("BIOPLAST_DEBUG") == "1"
    with warnings.catch_warnings(record=True) as caught:
        if debug:
            warnings.simplefilter("default")
        code = _run_command(args, debug)
    # after the work, one line each (an error line stands alone): bioplast's own notices
    # unless --quiet; the libraries' warnings with --debug
    shown = [w for w in caught if debug or (issubclass(w.category, BioplastWarning)
                                            and code == 0 and not args.quiet)]
    for message in dict.fromkeys(" ".join(str(w.message).split()) for w in shown):
        print(f"bioplast: warning: {message[:300]}", file=sys.stderr)
    return code


#: the arguments that name files
PATH_ARGUMENTS = ("source", "protocol", "file", "files", "result", "recording", "output",
                  "inputs", "plot")


def _check_paths(args) -> None:
    """InputError naming the argument if one of the file arguments cannot be a path."""
    from .files import check_path
    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        for text in value if isinstance(value, list) else [] if value is None else [value]:
            check_path(text, "-o" if name == "output" else f"--{name}"
                       if name in ("inputs", "plot") else name.upper())


def _run_command(args, debug: bool) -> int:
    """Run the command; every failure becomes one line on stderr and an exit code."""
    try:
        _check_paths(args)
        return args.func(args)
    except (InputError, CapabilityError) as error:
        if debug:
            traceback.print_exc()
        print(f"bioplast: error: {error}", file=sys.stderr)
        return 2
    except BioplastError as error:
        if debug:
            traceback.print_exc()
        print(f"bioplast: failed: {error}", file=sys.stderr)
        return 1
    except MemoryError:
        print("bioplast: failed: out of memory (a smaller model, fewer trials or steps?)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bioplast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `bioplast list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # a bug: one line, the traceback on request
        if debug:
            traceback.print_exc()
        reason = " ".join(str(error).split())[:200]
        print(f"bioplast: internal error: {type(error).__name__}: {reason} (run the same "
              f"command with --debug to see the traceback, and please report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
