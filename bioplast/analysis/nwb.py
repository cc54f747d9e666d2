"""Recordings in NWB (Neurodata Without Borders) as ``(trial, time, unit)`` Datasets.

Needs the optional extra ``pip install bioplast[nwb]`` (pynwb). The file's ``trials`` table
cuts the recording into trials: each trial's window ``[align + window[0], align +
window[1])`` (``align`` a time column of the table, ``start_time`` by default; the window by
default from the alignment to the end of the shortest trial) is divided into bins of ``bin_size`` seconds
(by default 10 ms for spikes and a TimeSeries' own sampling interval for a series). The
activity comes from the ``units`` table (spike counts per bin divided by the bin: spikes per
second) or from a ``TimeSeries`` named by ``source`` (e.g. a ``RoiResponseSeries`` of
fluorescence, in its unit after NWB's ``conversion`` and ``offset``; the mean of its
samples in each bin, linear interpolation at the bin's centre where a bin holds no sample,
NaN outside the recorded span). The ``time`` coordinate is the bin's start relative to the
alignment, in seconds, as in bioplast's results. The trials table's other scalar columns
become coordinates along ``trial``, ready to serve as condition labels in `compare`.

Every number read from the file is checked before use (trial times, the alignment column,
spike times, a series' samples, timestamps and rate: numeric, real, finite, sorted where
the binning needs it), and the bins are sized against the memory available before any
array is allocated; a miss is an `InputError` naming the file and the table, column or
series (or the flag: ``--bin``, ``--window``, ``--align``, ``--nwb-source``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError
from ..files import check_regular_file
from ..limits import array_bytes, check_memory

UNITS = "units"
DEFAULT_SPIKE_BIN = 0.01  # seconds: the bin of spike counts when --bin is not given
#: the trials table's own time columns (written by `bioplast.export` too)
TRIAL_TIMES = ("start_time", "stop_time")
#: names from the file (columns, series) are shown cut to this many characters
_NAME_CHARS = 60
#: more bins than this per trial is refused outright (beyond any memory, and beyond the
#: precision of float64 bin edges)
_MAX_BINS = 1e15
#: numeric dtypes read as real numbers (bool, signed and unsigned int, float)
_REAL_KINDS = "biuf"


def read_nwb(path, *, source: str = UNITS, bin_size: float | None = None,
             window: tuple[float, float] | None = None, align: str = "start_time"
             ) -> xr.Dataset:
    """``(trial, time, unit)`` activity of an NWB file; see the module docstring.

    Parameters
    ----------
    path : path-like
        The ``.nwb`` file.
    source : str
        ``"units"`` (spike times of the units table) or the name of a TimeSeries.
    bin_size : float, optional
        Bin width in seconds; by default 10 ms for the units table and the sampling
        interval (1 / rate, or the median step of the timestamps) for a TimeSeries.
    window : (float, float), optional
        Window around the alignment time, in seconds.
    align : str
        Column of the trials table with the alignment time of each trial, in seconds.

    Returns
    -------
    xarray.Dataset
        ``activity (trial, time, unit)`` plus the trial table's columns along ``trial``.
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError as error:
        raise InputError("reading NWB needs pynwb: pip install 'bioplast[nwb]'",
                         file=str(path)) from error
    where = str(path)
    check_regular_file(path, "NWB file")
    if bin_size is not None:
        bin_size = _real(bin_size, "the bin size", where, "--bin")
        if not bin_size > 0:
            raise InputError(f"the bin size must be positive, got {bin_size:g} s",
                             file=where, key="--bin")
    if window is not None:
        window = _window(window, where)
    if not isinstance(source, str) or not source:
        raise InputError("the source must be 'units' or the name of a TimeSeries",
                         file=where, key="--nwb-source")
    if not isinstance(align, str) or not align:
        raise InputError("the alignment must name a column of the trials table",
                         file=where, key="--align")
    try:
        io = NWBHDF5IO(str(path), "r", load_namespaces=True)
        nwbfile = io.read()
    except Exception as error:  # h5py and hdmf raise many kinds for unreadable files
        raise InputError(f"cannot read as NWB: {error}", file=where) from error
    with io:
        trials = _trial_table(nwbfile, align, where)
        if source == UNITS:
            table, n_units = _units_table(nwbfile, where)
            bin_size = DEFAULT_SPIKE_BIN if bin_size is None else bin_size
        else:
            series, n_units = _find_series(nwbfile, source, where)
            times = _sample_times(series, int(series.data.shape[0]), where)
            if bin_size is None:
                bin_size = _sampling_interval(series, times, where)
        aligned = trials[align]
        if window is None:  # from the alignment to the end of the shortest trial
            stops = _column(trials, "stop_time", where)
            with np.errstate(over="ignore", invalid="ignore"):
                durations = stops - aligned
            shortest = int(np.argmin(durations))
            length = float(durations[shortest])
            if not math.isfinite(length):
                raise InputError(f"trial {shortest} runs from '{_name(align)}' to stop_time "
                                 "over a span beyond float range", file=where, key="--align")
            if not length > 0:
                raise InputError(f"trial {shortest} ends {-length:g} s before its alignment "
                                 f"time '{_name(align)}' (give --window)", file=where,
                                 key="--align")
            offset = 0.0
        else:
            length = window[1] - window[0]
            offset = window[0]
        with np.errstate(over="ignore", invalid="ignore"):
            starts = aligned + offset
        if not np.all(np.isfinite(starts)):
            raise InputError(f"the window {window} around '{_name(align)}' reaches beyond "
                             "float range", file=where, key="--window")
        bins_key = "--bin" if window is None else "--window"
        ratio = length / bin_size
        if not math.isfinite(ratio) or ratio > _MAX_BINS:
            raise InputError(f"a window of {length:g} s in bins of {bin_size:g} s makes too "
                             f"many bins (more than {_MAX_BINS:g} per trial)", file=where,
                             key=bins_key)
        n_bins = int(np.floor(ratio + 1e-9))
        if n_bins < 2:
            raise InputError(f"a window of {length:g} s holds fewer than two bins of "
                             f"{bin_size:g} s", file=where, key="--bin")
        n_trials = len(starts)
        if source == UNITS:
            # edges and counts (trial, bin + 1), their differences and rates, the result
            needed = 4 * array_bytes(n_trials, n_bins + 1) + array_bytes(n_trials, n_bins,
                                                                         n_units)
        else:
            # edges, counts, n, centres, masks (trial, bin + 1); cumulative sums gathered,
            # sums, interpolation, mean and result (trial, bin, channel)
            needed = 5 * array_bytes(n_trials, n_bins + 1) + 6 * array_bytes(
                n_trials, n_bins, n_units)
        check_memory(needed, f"{n_trials} trials x {n_bins} bins of {bin_size:g} s x "
                     f"{n_units} {'units' if source == UNITS else 'channels'}", file=where,
                     key=bins_key)
        edges = starts[:, None] + np.arange(n_bins + 1) * bin_size
        if source == UNITS:
            values, unit_ids, units = _binned_spikes(table, edges, bin_size, where)
        else:
            values, unit_ids, units = _binned_series(series, times, edges, where)
        coords = {schema.TIME: (schema.TIME, offset + np.arange(n_bins) * bin_size,
                                {schema.ATTR_UNITS: "second"}),
                  schema.UNIT: (schema.UNIT, unit_ids),
                  schema.TRIAL: (schema.TRIAL, np.arange(n_trials))}
        for name, column in trials.items():
            if name not in TRIAL_TIMES:
                coords[name] = (schema.TRIAL, column)
        return xr.Dataset(
            {"activity": ((schema.TRIAL, schema.TIME, schema.UNIT), values,
                          {schema.ATTR_UNITS: units})},
            coords=coords,
            attrs={schema.ATTR_KIND: "recording", "source_file": where, "nwb_source": source,
                   "bin_size": float(bin_size), "align": align,
                   "session_description": str(nwbfile.session_description),
                   "identifier": str(nwbfile.identifier)})


# ---------------------------------------------------------------------- checks
def _name(text) -> str:
    """A name from the file or the command line, cut for a message."""
    text = str(text)
    return text if len(text) <= _NAME_CHARS else text[:_NAME_CHARS - 3] + "..."


def _real(value, what: str, where: str, key: str) -> float:
    """``value`` as a finite real float, else InputError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number of seconds", file=where, key=key)
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a number of seconds", file=where, key=key) from None
    if not math.isfinite(value):
        raise InputError(f"{what} must be finite, got {value}", file=where, key=key)
    return value


def _window(window, where: str) -> tuple[float, float]:
    try:
        start, stop = window
    except (TypeError, ValueError):
        raise InputError("the window must be two times, START,STOP", file=where,
                         key="--window") from None
    start = _real(start, "the window's start", where, "--window")
    stop = _real(stop, "the window's stop", where, "--window")
    if not stop > start:
        raise InputError(f"the window ({start:g} s, {stop:g} s) is empty", file=where,
                         key="--window")
    if not math.isfinite(stop - start):
        raise InputError(f"the window ({start:g} s, {stop:g} s) spans beyond float range",
                         file=where, key="--window")
    return start, stop


def _read(dataset, what: str, where: str, key: str, *, real: bool = True,
          ndim: int | None = None) -> np.ndarray:
    """The whole of ``dataset`` (an h5py dataset or an array) as an array, after checking
    its shape against memory and (``real``) that it holds real numbers."""
    try:
        if getattr(dataset, "shape", None) is None or getattr(dataset, "dtype", None) is None:
            dataset = np.asarray(dataset)  # a list held in memory: nothing to bound
        shape = tuple(int(size) for size in dataset.shape)
        dtype = np.dtype(dataset.dtype)
    except Exception as error:  # noqa: BLE001 - h5py, hdmf: a damaged dataset
        raise InputError(f"cannot read {what} ({type(error).__name__})", file=where,
                         key=key) from error
    if ndim is not None and len(shape) != ndim:
        raise InputError(f"{what} has {len(shape)} dimensions, expected {ndim}", file=where,
                         key=key)
    if real and dtype.kind not in _REAL_KINDS:
        kind = "text" if dtype.kind in "OSU" else "complex numbers" if dtype.kind == "c" \
            else f"values of type {dtype.name}"
        raise InputError(f"{what} holds {kind}, not real numbers", file=where, key=key)
    check_memory(3 * array_bytes(*shape), f"reading {what} of shape {shape}", file=where,
                 key=key)
    try:
        if not shape:
            array = np.asarray(dataset[()])
        else:
            array = np.asarray(dataset[:])
        if real:
            array = array.astype(float)
    except Exception as error:  # noqa: BLE001 - h5py, hdmf: a damaged dataset
        raise InputError(f"cannot read {what} ({type(error).__name__})", file=where,
                         key=key) from error
    return array


def _check_finite(array: np.ndarray, what: str, where: str, key: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.unravel_index(int(np.argmax(bad)), array.shape)[0])
        raise InputError(f"{what} holds NaN or infinite values ({int(bad.sum())}, the first "
                         f"at index {first})", file=where, key=key)


def _column(columns: dict[str, np.ndarray], name: str, where: str) -> np.ndarray:
    if name not in columns:
        raise InputError(f"the trials table has no column '{name}'", file=where,
                         key=f"trials.{name}")
    return columns[name]


# ---------------------------------------------------------------------- tables
def _trial_table(nwbfile, align: str, where: str) -> dict[str, np.ndarray]:
    """The trials table's scalar columns as arrays (``align`` among them, as checked
    finite floats, and so are start_time and stop_time)."""
    from hdmf.common.table import DynamicTableRegion, VectorIndex
    try:
        table = nwbfile.trials
        n_trials = 0 if table is None else len(table)
        names = [] if table is None else [str(name) for name in table.colnames]
    except Exception as error:  # noqa: BLE001 - a damaged table
        raise InputError(f"cannot read the trials table ({type(error).__name__})",
                         file=where, key="trials") from error
    if table is None or n_trials == 0:
        raise InputError("the file has no trials table: bioplast cuts a recording into "
                         "(trial, time, unit) by its trials", file=where, key="trials")
    check_memory(2 * array_bytes(n_trials, len(names) + 1), f"the trials table "
                 f"({n_trials} trials x {len(names)} columns)", file=where, key="trials")
    columns = {}
    for name in names:
        key = f"trials.{_name(name)}"
        try:
            column = table[name]
            data = column.data
        except Exception as error:  # noqa: BLE001 - a damaged column
            raise InputError(f"cannot read the column ({type(error).__name__})", file=where,
                             key=key) from error
        if isinstance(column, (VectorIndex, DynamicTableRegion)):
            continue  # ragged columns and references to other tables are no labels
        shape = getattr(data, "shape", None)
        if shape is None or len(shape) != 1 or shape[0] != n_trials:
            continue  # multidimensional or mis-sized: not a label per trial
        kind = np.dtype(getattr(data, "dtype", np.dtype(object))).kind
        if kind in _REAL_KINDS:
            columns[name] = _read(data, f"the trials table's column '{_name(name)}'", where,
                                  key, real=False)
        elif kind in "OSU":
            values = _read(data, f"the trials table's column '{_name(name)}'", where, key,
                           real=False)
            if all(isinstance(value, str) for value in values):
                columns[name] = values.astype(str)
    if align not in columns or columns[align].dtype.kind not in _REAL_KINDS:
        shown = ", ".join(_name(name) for name in names)
        raise InputError(f"the trials table has no numeric column '{_name(align)}' to align "
                         f"on (columns: {shown})", file=where, key="--align")
    for name in {align, *TRIAL_TIMES} & set(columns):
        if columns[name].dtype.kind not in _REAL_KINDS:
            raise InputError(f"the trials table's column '{_name(name)}' is not numeric",
                             file=where, key=f"trials.{_name(name)}")
        columns[name] = columns[name].astype(float)
        _check_finite(columns[name], f"the trials table's column '{_name(name)}'", where,
                      f"trials.{_name(name)}")
    if "start_time" in columns and "stop_time" in columns:
        backwards = columns["stop_time"] < columns["start_time"]
        if backwards.any():
            raise InputError(f"trial {int(np.argmax(backwards))} stops before it starts "
                             f"({int(backwards.sum())} such trials)", file=where,
                             key="trials.stop_time")
    return columns


def _units_table(nwbfile, where: str):
    """The units table and its number of units."""
    try:
        table = nwbfile.units
        n_units = 0 if table is None else len(table)
        has_spikes = table is not None and "spike_times" in table.colnames
    except Exception as error:  # noqa: BLE001 - a damaged table
        raise InputError(f"cannot read the units table ({type(error).__name__})",
                         file=where, key="units") from error
    if not n_units or not has_spikes:
        raise InputError("the file has no units table with spike_times (give a TimeSeries "
                         "name as the source instead)", file=where, key="--nwb-source")
    return table, n_units


def _binned_spikes(table, edges: np.ndarray, bin_size: float, where: str):
    """Spike counts per bin / bin: ``(trial, bin, unit)`` in spikes per second."""
    from hdmf.common.table import VectorIndex
    key = "units.spike_times"
    n_units = len(table)
    column = table["spike_times"]
    if not isinstance(column, VectorIndex):
        raise InputError("spike_times is not a ragged column (one list of times per unit)",
                         file=where, key=key)
    ends = _read(column.data, "the index of spike_times", where, key + "_index", real=False,
                 ndim=1)
    times = _read(column.target.data, "spike_times", where, key, ndim=1)
    if ends.dtype.kind not in "iu" or len(ends) != n_units:
        raise InputError(f"the index of spike_times holds {len(ends)} values of type "
                         f"{ends.dtype.name}, expected {n_units} integers", file=where,
                         key=key + "_index")
    ends = ends.astype(np.int64)
    if (ends < 0).any() or (ends > len(times)).any() or (np.diff(ends) < 0).any():
        raise InputError(f"the index of spike_times does not cut the {len(times)} spike "
                         "times in order", file=where, key=key + "_index")
    _check_finite(times, "spike_times", where, key)
    try:
        unit_ids = np.asarray(table.id[:])
    except Exception as error:  # noqa: BLE001 - a damaged column
        raise InputError(f"cannot read the ids of the units ({type(error).__name__})",
                         file=where, key="units.id") from error
    if unit_ids.shape != (n_units,) or unit_ids.dtype.kind not in "iu":
        unit_ids = np.arange(n_units)
    values = np.empty((edges.shape[0], edges.shape[1] - 1, n_units))
    begin = 0
    for index, end in enumerate(ends):
        spikes = np.sort(times[begin:end])
        begin = end
        counts = np.searchsorted(spikes, edges, side="left")
        values[:, :, index] = np.diff(counts, axis=1) / bin_size
    return values, unit_ids, "spikes/second"


# ---------------------------------------------------------------------- time series
def _find_series(nwbfile, name: str, where: str):
    """The TimeSeries called ``name`` and its number of channels (shape checked)."""
    from pynwb import TimeSeries
    found = [obj for obj in nwbfile.objects.values()
             if isinstance(obj, TimeSeries) and obj.name == name]
    if not found:
        names = sorted({_name(obj.name) for obj in nwbfile.objects.values()
                        if isinstance(obj, TimeSeries)})
        raise InputError(f"no TimeSeries '{_name(name)}' (time series in the file: "
                         f"{', '.join(names) or 'none'}; or use the units table: "
                         f"source '{UNITS}')", file=where, key="--nwb-source")
    if len(found) > 1:
        raise InputError(f"{len(found)} TimeSeries are named '{_name(name)}'", file=where,
                         key="--nwb-source")
    series = found[0]
    what = f"the TimeSeries '{_name(name)}'"
    try:
        shape = tuple(int(size) for size in series.data.shape)
    except Exception as error:  # noqa: BLE001 - no data, or damaged
        raise InputError(f"cannot read the data of {what} ({type(error).__name__})",
                         file=where, key=f"{_name(name)}.data") from error
    if not shape or shape[0] == 0 or math.prod(shape[1:]) == 0:
        raise InputError(f"{what} holds no samples (data of shape {shape})", file=where,
                         key=f"{_name(name)}.data")
    return series, math.prod(shape[1:])


def _binned_series(series, times: np.ndarray, edges: np.ndarray, where: str):
    """Mean of a TimeSeries' samples (at ``times``, `_sample_times`) per bin: ``(trial,
    bin, channel)``."""
    name = _name(series.name)
    what = f"the TimeSeries '{name}'"
    data = _read(series.data, f"the data of {what}", where, f"{name}.data")
    data = data.reshape(data.shape[0], -1)
    # stored values in the series' unit: data * conversion + offset (NWB's convention)
    conversion = _attribute(series, "conversion", 1.0, what, where)
    shift = _attribute(series, "offset", 0.0, what, where)
    with np.errstate(over="ignore", invalid="ignore"):
        data = data * conversion + shift
    _check_finite(data, f"the data of {what} (times conversion, plus offset)", where,
                  f"{name}.data")
    counts = np.searchsorted(times, edges, side="left")
    cumulative = np.concatenate([np.zeros((1, data.shape[1])), np.cumsum(data, axis=0)])
    sums = cumulative[counts[:, 1:]] - cumulative[counts[:, :-1]]
    n = (counts[:, 1:] - counts[:, :-1])[..., None]
    centres = 0.5 * (edges[:, 1:] + edges[:, :-1])
    interpolated = np.stack([np.interp(centres, times, data[:, c]) for c in
                             range(data.shape[1])], axis=-1)
    values = np.where(n > 0, sums / np.maximum(n, 1), interpolated)
    # a bin with no sample whose centre lies beyond the recorded span: unknown
    outside = (n[..., 0] == 0) & ((centres < times[0]) | (centres > times[-1]))
    values[outside] = np.nan
    return values, np.arange(data.shape[1]), str(series.unit)


def _sample_times(series, n_samples: int, where: str) -> np.ndarray:
    """The times of a TimeSeries' ``n_samples`` samples in seconds (its timestamps, or
    ``starting_time + i / rate``), checked finite and sorted."""
    name = _name(series.name)
    what = f"the TimeSeries '{name}'"
    if series.timestamps is not None:
        times = _read(series.timestamps, f"the timestamps of {what}", where,
                      f"{name}.timestamps", ndim=1)
        if len(times) != n_samples:
            raise InputError(f"{what} has {len(times)} timestamps for {n_samples} "
                             "samples", file=where, key=f"{name}.timestamps")
        _check_finite(times, f"the timestamps of {what}", where, f"{name}.timestamps")
        if (np.diff(times) < 0).any():
            raise InputError(f"the timestamps of {what} are not in increasing order",
                             file=where, key=f"{name}.timestamps")
        return times
    rate = _rate(series, where)
    start = _attribute(series, "starting_time", 0.0, what, where)
    with np.errstate(over="ignore", invalid="ignore"):
        times = start + np.arange(n_samples) / rate
    _check_finite(times, f"the sample times of {what} (starting_time + i / rate)", where,
                  f"{name}.rate")
    return times


def _rate(series, where: str) -> float:
    """The sampling rate of a TimeSeries without timestamps, in Hz (positive, finite)."""
    name = _name(series.name)
    what = f"the TimeSeries '{name}'"
    rate = _attribute(series, "rate", None, what, where)
    if rate is None or not rate > 0:
        raise InputError(f"{what} has neither timestamps nor a positive rate",
                         file=where, key=f"{name}.rate")
    return rate


def _sampling_interval(series, times: np.ndarray, where: str) -> float:
    """The default bin of a TimeSeries in seconds: ``1 / rate``, or the median step between
    its timestamps (``times``, `_sample_times`)."""
    if series.timestamps is None:
        return 1.0 / _rate(series, where)
    steps = np.diff(times)
    steps = steps[steps > 0]
    if not len(steps):
        raise InputError(f"the TimeSeries '{_name(series.name)}' has no two distinct "
                         "timestamps to take a bin width from (give --bin)", file=where,
                         key="--bin")
    return float(np.median(steps))


def _attribute(series, name: str, default, what: str, where: str):
    """A scalar number of the series (``conversion``, ``rate``...) as a finite float;
    ``default`` where it is absent."""
    value = getattr(series, name, None)
    if value is None:
        return default
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"the {name} of {what} is not a number", file=where,
                         key=f"{_name(series.name)}.{name}") from None
    if not math.isfinite(value):
        raise InputError(f"the {name} of {what} is {value}, not a finite number",
                         file=where, key=f"{_name(series.name)}.{name}")
    return value
