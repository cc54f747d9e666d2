"""Recordings in NWB (Neurodata Without Borders) as ``(trial, time, unit)`` Datasets.

Needs the optional extra ``pip install bioplast[nwb]`` (pynwb). The file's ``trials`` table
cuts the recording into trials: each trial's window ``[align + window[0], align +
window[1])`` (``align`` a time column of the table, ``start_time`` by default; the window by
default from the alignment to the end of the shortest trial) is divided into bins of ``bin_size`` seconds. The
activity comes from the ``units`` table (spike counts per bin divided by the bin: spikes per
second) or from a ``TimeSeries`` named by ``source`` (e.g. a ``RoiResponseSeries`` of
fluorescence, in its unit after NWB's ``conversion`` and ``offset``; the mean of its
samples in each bin, linear interpolation at the bin's centre where a bin holds no sample,
NaN outside the recorded span). The ``time`` coordinate is the bin's start relative to the
alignment, in seconds, as in bioplast's results. The trials table's other scalar columns
become coordinates along ``trial``, ready to serve as condition labels in `compare`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InputError

UNITS = "units"
_TABLE_TIMES = ("start_time", "stop_time")


def read_nwb(path, *, source: str = UNITS, bin_size: float = 0.01,
             window: tuple[float, float] | None = None, align: str = "start_time"
             ) -> xr.Dataset:
    """``(trial, time, unit)`` activity of an NWB file; see the module docstring.

    Parameters
    ----------
    path : path-like
        The ``.nwb`` file.
    source : str
        ``"units"`` (spike times of the units table) or the name of a TimeSeries.
    bin_size : float
        Bin width in seconds.
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
    if not Path(path).is_file():
        raise InputError("no such file", file=where)
    if not bin_size > 0:
        raise InputError(f"the bin size must be positive, got {bin_size}", file=where,
                         key="bin_size")
    try:
        io = NWBHDF5IO(str(path), "r", load_namespaces=True)
        nwbfile = io.read()
    except Exception as error:  # h5py and hdmf raise many kinds for unreadable files
        raise InputError(f"cannot read as NWB: {error}", file=where) from error
    with io:
        trials = _trial_table(nwbfile, align, where)
        starts = trials[align] + (0.0 if window is None else window[0])
        if window is None:  # from the alignment to the end of the shortest trial
            durations = trials["stop_time"] - trials[align]
            length = float(np.min(durations))
        else:
            if not window[1] > window[0]:
                raise InputError(f"the window {window} is empty", file=where, key="window")
            length = float(window[1] - window[0])
        n_bins = int(np.floor(length / bin_size + 1e-9))
        if n_bins < 2:
            raise InputError(f"a window of {length} s holds fewer than two bins of "
                             f"{bin_size} s", file=where, key="bin_size")
        edges = starts[:, None] + np.arange(n_bins + 1) * bin_size
        if source == UNITS:
            values, unit_ids, units = _binned_spikes(nwbfile, edges, bin_size, where)
        else:
            values, unit_ids, units = _binned_series(nwbfile, source, edges, where)
        offset = 0.0 if window is None else float(window[0])
        coords = {schema.TIME: (schema.TIME, offset + np.arange(n_bins) * bin_size,
                                {schema.ATTR_UNITS: "second"}),
                  schema.UNIT: (schema.UNIT, unit_ids),
                  schema.TRIAL: (schema.TRIAL, np.arange(len(starts)))}
        for name, column in trials.items():
            if name not in _TABLE_TIMES:
                coords[name] = (schema.TRIAL, column)
        return xr.Dataset(
            {"activity": ((schema.TRIAL, schema.TIME, schema.UNIT), values,
                          {schema.ATTR_UNITS: units})},
            coords=coords,
            attrs={schema.ATTR_KIND: "recording", "source_file": where, "nwb_source": source,
                   "bin_size": float(bin_size), "align": align,
                   "session_description": str(nwbfile.session_description),
                   "identifier": str(nwbfile.identifier)})


def _trial_table(nwbfile, align: str, where: str) -> dict[str, np.ndarray]:
    """The trials table's scalar columns as arrays (``align`` among them)."""
    table = nwbfile.trials
    if table is None or len(table) == 0:
        raise InputError("the file has no trials table: bioplast cuts a recording into "
                         "(trial, time, unit) by its trials", file=where, key="trials")
    frame = table.to_dataframe()
    columns = {}
    for name in frame.columns:
        column = np.asarray(frame[name].values)
        if column.dtype != object:
            columns[str(name)] = column
        elif all(isinstance(value, str) for value in column):
            columns[str(name)] = column.astype(str)
    if align not in columns or not np.issubdtype(columns[align].dtype, np.number):
        raise InputError(f"the trials table has no numeric column '{align}' to align on "
                         f"(columns: {', '.join(map(str, frame.columns))})", file=where,
                         key=f"trials.{align}")
    columns[align] = columns[align].astype(float)
    return columns


def _binned_spikes(nwbfile, edges: np.ndarray, bin_size: float, where: str):
    """Spike counts per bin / bin: ``(trial, bin, unit)`` in spikes per second."""
    table = nwbfile.units
    if table is None or len(table) == 0 or "spike_times" not in table.colnames:
        raise InputError("the file has no units table with spike_times (give a TimeSeries "
                         "name as the source instead)", file=where, key="units")
    values = np.zeros((edges.shape[0], edges.shape[1] - 1, len(table)))
    for index in range(len(table)):
        spikes = np.sort(np.asarray(table["spike_times"][index], dtype=float))
        counts = np.searchsorted(spikes, edges, side="left")
        values[:, :, index] = np.diff(counts, axis=1) / bin_size
    return values, np.asarray(table.id[:]), "spikes/second"


def _binned_series(nwbfile, name: str, edges: np.ndarray, where: str):
    """Mean of a TimeSeries' samples per bin: ``(trial, bin, channel)``."""
    from pynwb import TimeSeries
    found = [obj for obj in nwbfile.objects.values()
             if isinstance(obj, TimeSeries) and obj.name == name]
    if not found:
        names = sorted({obj.name for obj in nwbfile.objects.values()
                        if isinstance(obj, TimeSeries)})
        raise InputError(f"no TimeSeries '{name}' (time series in the file: "
                         f"{', '.join(names) or 'none'}; or use the units table: "
                         f"source '{UNITS}')", file=where, key=name)
    if len(found) > 1:
        raise InputError(f"{len(found)} TimeSeries are named '{name}'", file=where, key=name)
    series = found[0]
    # stored values in the series' unit: data * conversion + offset (NWB's convention)
    data = np.asarray(series.data[:], dtype=float) * float(series.conversion) \
        + float(getattr(series, "offset", 0.0) or 0.0)
    data = data[:, None] if data.ndim == 1 else data.reshape(data.shape[0], -1)
    if series.timestamps is not None:
        times = np.asarray(series.timestamps[:], dtype=float)
    else:
        times = float(series.starting_time or 0.0) + np.arange(data.shape[0]) / series.rate
    counts = np.searchsorted(times, edges, side="left")
    cumulative = np.concatenate([np.zeros((1, data.shape[1])), np.cumsum(data, axis=0)])
    sums = cumulative[counts[:, 1:]] - cumulative[counts[:, :-1]]
    n = (counts[:, 1:] - counts[:, :-1])[..., None]
    centres = 0.5 * (edges[:, 1:] + edges[:, :-1])
    interpolated = np.stack([np.interp(centres, times, data[:, c]) for c in
                             range(data.shape[1])], axis=-1)
    values = np.where(n > 0, sums / np.maximum(n, 1), interpolated)
    outside = (centres < times[0]) | (centres > times[-1])  # no samples there: unknown
    values[outside] = np.nan
    return values, np.arange(data.shape[1]), str(series.unit)
