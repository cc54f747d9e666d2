"""A result's recorded trials as an NWB file or a flat CSV table (``bioplast export``).

What is written: one ``(trial, time, unit)`` variable of one network (`recorded_activity`:
``--variable``, by default the model's readout source when it was recorded, else the first
``(trial, time, unit)`` variable), and the result's condition labels (every coordinate or
variable along ``trial`` only, e.g. ``condition_cue``, `bioplast.analysis.similarity.
condition_names`), under their names in the result.

NWB (`write_nwb`, needs ``bioplast[nwb]``; the layout `bioplast.analysis.nwb.read_nwb`
reads back, so ``bioplast compare RESULT.nc OUT.nwb --nwb-source VARIABLE --bin DT``
compares a model with its own export):

- ``acquisition/VARIABLE``: a ``TimeSeries`` of shape ``(trial * time, unit)``, the trials
  laid end to end on one clock: trial ``j`` runs from ``j * T`` to ``(j + 1) * T`` (``T``
  = steps x dt), and the value of its step ``k`` is stamped at the middle of the step,
  ``j * T + k * dt + dt / 2`` (``timestamps``, seconds). Binned at ``dt`` from the trial's
  start, every bin holds exactly one step, and the bin's start, ``k * dt``, is the result's
  ``time`` coordinate again. Its ``unit`` is the variable's ``units`` attr.
- ``trials``: ``start_time``, ``stop_time`` (seconds) and one column per condition label.
- File metadata: ``session_description`` (model, variable, trials); ``session_start_time``
  the result's ``created`` time; ``protocol`` the protocol YAML text (training results);
  ``source_script`` the model YAML text (``source_script_file_name`` ``MODEL_NAME.yaml``);
  ``notes`` a JSON object: ``"result"`` every global attr of the result (model and
  protocol texts, ``bioplast_version``, ``library_versions`` with torch and brian2, seed,
  backend, dt, command, ...), ``"export"`` what wrote the file (``bioplast_version``,
  ``command``, ``source_file``, ``variable``, ``dt``, ``layout``).

CSV (`write_csv`): a header row, then one row per trial, time step and unit, in that order:
``trial, time_s, unit, value, <condition>...``; ``time_s`` is the result's ``time``
coordinate (the start of the step, seconds), ``trial`` and ``unit`` the result's
coordinates, ``value`` in the variable's ``units`` (``repr`` of the float: read back
exactly; NaN as ``nan``).

Both are written atomically (`bioplast.files.atomic_write`). Bad input is an `InputError`
naming the file and the flag or variable: no recorded trials, an unknown ``--variable``,
several networks (``--select``), no ``time`` coordinate in seconds, a condition named like
a column of the output, NaN or inf for NWB (which `read_nwb` refuses), pynwb missing.
"""

from __future__ import annotations

import csv
import datetime as _datetime
import json
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from . import __version__, schema
from .analysis.data import activity, activity_names, check_one_network, describe_nonfinite, \
    time_step
from .analysis.nwb import TRIAL_TIMES
from .analysis.similarity import condition_names
from .errors import InputError
from .files import atomic_write

FORMATS = {".nwb": "nwb", ".csv": "csv"}
#: the CSV's columns before the conditions; the time column says its unit
CSV_COLUMNS = (schema.TRIAL, "time_s", schema.UNIT, "value")
#: columns of NWB's trials table that a condition must not be named after
NWB_TRIAL_COLUMNS = (*TRIAL_TIMES, "tags", "timeseries", "id")


@dataclass(frozen=True)
class RecordedActivity:
    """One ``(trial, time, unit)`` variable of a result, ready to be written.

    Attributes
    ----------
    name : str
        The variable's name in the result.
    traces : xarray.DataArray
        ``(trial, time, unit)`` float64, with the result's coordinates and attrs.
    dt : float
        The step of the ``time`` coordinate, seconds.
    conditions : dict of str to numpy.ndarray
        Condition labels ``(trial,)`` by name, in the result's order.
    attrs : dict
        The result's global attrs.
    """

    name: str
    traces: xr.DataArray
    dt: float
    conditions: dict
    attrs: dict

    @property
    def units(self) -> str:
        """The variable's unit (its ``units`` attr), ``unknown`` if it has none."""
        return str(self.traces.attrs.get(schema.ATTR_UNITS) or "unknown")


def export_format(output: str, given: str | None) -> str:
    """``given`` (``--format``), else the format the suffix of ``output`` names;
    InputError (key ``-o``) for another suffix without ``--format``."""
    if given is not None:
        return given
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"cannot tell the format from the suffix '{suffix}' (.nwb or .csv); "
                         "give --format nwb|csv", file=output, key="-o")
    return FORMATS[suffix]


def default_variable(dataset: xr.Dataset, where: str) -> str | None:
    """The model's readout source if the result recorded it, else None (the first
    ``(trial, time, unit)`` variable is taken)."""
    from .results import stored_model
    if schema.ATTR_MODEL not in dataset.attrs:
        return None
    model = stored_model(dataset, where)
    source = model.readout.source if model.readout else None
    return source if source in activity_names(dataset) else None


def recorded_activity(dataset: xr.Dataset, variable: str | None, where: str
                      ) -> RecordedActivity:
    """The activity of one network's result (a `bioplast.results.choose_network`
    selection) to export; see the module docstring for the default ``variable``.

    Raises InputError naming ``where``: several networks; no recorded trials; no
    variable ``variable`` (key ``--variable``); a ``time`` coordinate that is missing, not
    evenly spaced or not in seconds.
    """
    check_one_network(dataset, where)
    names = activity_names(dataset)
    if not names:
        raise InputError("holds no recorded trials (no variable with dims (trial, time, "
                         "unit); a training result records them with record.trials > 0)",
                         file=where)
    if variable is not None and variable not in names:
        raise InputError(f"no recorded variable '{variable[:60]}' with dims (trial, time, "
                         f"unit) (recorded: {', '.join(names)})", file=where,
                         key="--variable")
    traces, name = activity(dataset, variable or default_variable(dataset, where), where)
    if schema.TIME not in traces.coords:
        raise InputError(f"'{name}' has no time coordinate (seconds) to write times from",
                         file=where, key=schema.TIME)
    dt, _ = time_step(traces, where)
    conditions = {label: np.asarray(dataset[label].values)
                  for label in condition_names(dataset)}
    return RecordedActivity(name, traces, dt, conditions, dict(dataset.attrs))


def _check_condition_names(recorded: RecordedActivity, reserved, what: str,
                           where: str) -> None:
    clash = [label for label in recorded.conditions if label in reserved]
    if clash:
        raise InputError(f"the condition label '{clash[0][:60]}' has the name of a column "
                         f"of {what} ({', '.join(reserved)}): rename it in the result",
                         file=where, key=clash[0][:60])


# ---------------------------------------------------------------------- CSV
def write_csv(recorded: RecordedActivity, path, where: str) -> Path:
    """Write the long table of the module docstring to ``path`` atomically."""
    _check_condition_names(recorded, CSV_COLUMNS, "the CSV table", where)
    traces = recorded.traces
    values = traces.values
    times = traces[schema.TIME].values.astype(float).tolist()
    trials = _coordinate(traces, schema.TRIAL)
    units = _coordinate(traces, schema.UNIT)
    labels = [[_text_or_number(value) for value in column]
              for column in recorded.conditions.values()]
    with atomic_write(path) as temporary, open(temporary, "w", newline="",
                                                encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*CSV_COLUMNS, *recorded.conditions])
        for index, trial in enumerate(trials):
            trial_labels = [column[index] for column in labels]
            for step, time in enumerate(times):
                writer.writerows([trial, time, unit, value, *trial_labels]
                                 for unit, value in zip(units, values[index, step].tolist()))
    return Path(path)


def _coordinate(traces: xr.DataArray, dim: str) -> list:
    """The values of ``dim``'s coordinate as Python scalars (indices without one)."""
    if dim in traces.coords:
        return [_text_or_number(value) for value in traces[dim].values]
    return list(range(traces.sizes[dim]))


def _text_or_number(value):
    """A label as a Python number, bool or text."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def _json_value(value):
    """An attr as JSON can hold it (arrays as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return _text_or_number(value)


# ---------------------------------------------------------------------- NWB
def write_nwb(recorded: RecordedActivity, path, where: str, command: str | None = None
              ) -> Path:
    """Write the NWB file of the module docstring to ``path`` atomically."""
    try:
        from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    except ImportError as error:
        raise InputError("writing NWB needs pynwb: pip install 'bioplast[nwb]'",
                         file=str(path), key="--format") from error
    _check_condition_names(recorded, NWB_TRIAL_COLUMNS, "NWB's trials table", where)
    traces = recorded.traces
    values = traces.values
    if not np.isfinite(values).all():
        raise InputError(f"holds NaN or inf ({describe_nonfinite(values)}), which NWB "
                         "readers refuse: export to CSV (--format csv), or choose other "
                         "trials", file=where, key=recorded.name)
    n_trials, n_steps, n_units = values.shape
    duration = n_steps * recorded.dt
    starts = np.arange(n_trials) * duration
    offsets = traces[schema.TIME].values.astype(float)
    offsets = offsets - offsets[0] + recorded.dt / 2
    timestamps = (starts[:, None] + offsets[None, :]).ravel()
    attrs = recorded.attrs
    model_name = attrs.get(schema.ATTR_MODEL_NAME)
    metadata = {}
    if isinstance(attrs.get(schema.ATTR_PROTOCOL), str):
        metadata["protocol"] = attrs[schema.ATTR_PROTOCOL]
    if isinstance(attrs.get(schema.ATTR_MODEL), str):
        metadata["source_script"] = attrs[schema.ATTR_MODEL]
        metadata["source_script_file_name"] = f"{model_name or 'model'}.yaml"
    subject = f"bioplast model '{model_name}'" if model_name else "bioplast data"
    nwbfile = NWBFile(
        session_description=f"{subject}: {n_trials} trials of '{recorded.name}' "
                            f"({n_units} units, {n_steps} steps of {recorded.dt:g} s)",
        identifier=str(uuid.uuid4()), session_start_time=_created(attrs),
        notes=json.dumps({"result": {key: _json_value(value) for key, value in
                                     attrs.items()},
                          "export": {schema.ATTR_VERSION: __version__, "command": command,
                                     "source_file": where, "variable": recorded.name,
                                     "dt": recorded.dt, "layout": _LAYOUT}},
                         sort_keys=True),
        **metadata)
    nwbfile.add_acquisition(TimeSeries(
        name=recorded.name, data=values.reshape(n_trials * n_steps, n_units),
        unit=recorded.units, timestamps=timestamps,
        description=f"'{recorded.name}' of {n_units} units: {_LAYOUT}"))
    for label, column in recorded.conditions.items():
        nwbfile.add_trial_column(label, f"the result's '{label}' along trial")
    for trial in range(n_trials):
        nwbfile.add_trial(start_time=float(starts[trial]),
                          stop_time=float(starts[trial] + duration),
                          **{label: _text_or_number(column[trial])
                             for label, column in recorded.conditions.items()})
    with atomic_write(path) as temporary, warnings.catch_warnings():
        # the temporary's name does not end in .nwb; the file written does
        warnings.filterwarnings("ignore", "The file path provided", UserWarning)
        with NWBHDF5IO(str(temporary), "w") as io:
            io.write(nwbfile)
    return Path(path)


_LAYOUT = ("trials laid end to end, trial j from j*T to (j+1)*T (T = steps x dt); step k "
           "stamped at the middle of the step, j*T + k*dt + dt/2 (bins of dt from the "
           "trial's start hold one step each)")


def _created(attrs: dict) -> _datetime.datetime:
    """The result's ``created`` time (UTC), else now: NWB's session start."""
    try:
        created = _datetime.datetime.fromisoformat(str(attrs[schema.ATTR_CREATED]))
    except (KeyError, ValueError):
        return _datetime.datetime.now(_datetime.timezone.utc)
    return created if created.tzinfo else created.replace(tzinfo=_datetime.timezone.utc)
