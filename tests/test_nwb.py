"""NWB recordings cut into (trial, time, unit): spike counts checked against counting by hand,
a sampled sine against its analytic bin means; the CLI reads .nwb files directly."""

import os
from datetime import datetime, timezone

import numpy as np
import pytest
import xarray as xr

pynwb = pytest.importorskip("pynwb")

from bioplast import cli  # noqa: E402
from bioplast.analysis.nwb import read_nwb  # noqa: E402
from bioplast.errors import InputError  # noqa: E402
from hostile.make_corpus import nwb  # noqa: E402

RATES = {"left": [5.0, 40.0], "right": [40.0, 5.0]}  # spikes/second of the two units
TRIAL_LENGTH, GAP, N_TRIALS = 0.5, 0.25, 12
OMEGA = 2 * np.pi * 3.0  # the sine series: sin(OMEGA t), sampled at 1 kHz from 0.5 ms


def write_nwb(path, with_trials=True, seed=0):
    rng = np.random.default_rng(seed)
    nwbfile = pynwb.NWBFile(session_description="synthetic", identifier="test-session",
                            session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    conditions = ["left", "right"] * (N_TRIALS // 2)
    starts = 1.0 + np.arange(N_TRIALS) * (TRIAL_LENGTH + GAP)
    spikes = [[], []]
    for start, condition in zip(starts, conditions):
        for unit, rate in enumerate(RATES[condition]):
            count = rng.poisson(rate * TRIAL_LENGTH)
            spikes[unit].extend(start + np.sort(rng.uniform(0, TRIAL_LENGTH, count)))
    for unit_spikes in spikes:
        nwbfile.add_unit(spike_times=np.asarray(unit_spikes))
    if with_trials:
        nwbfile.add_trial_column("condition", "cue side")
        nwbfile.add_trial_column("cue_time", "cue onset (s)")
        for start, condition in zip(starts, conditions):
            nwbfile.add_trial(start_time=start, stop_time=start + TRIAL_LENGTH,
                              condition=condition, cue_time=start + 0.1)
    times = 0.5e-3 + np.arange(0, starts[-1] + 1.0, 1e-3)  # samples between bin edges
    nwbfile.add_acquisition(pynwb.TimeSeries(name="sine", data=np.sin(OMEGA * times),
                                             unit="a.u.", rate=1000.0, starting_time=0.5e-3))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path, spikes, starts


def test_spike_counts_per_bin_match_counting_by_hand(tmp_path):
    path, spikes, starts = write_nwb(tmp_path / "rec.nwb")
    data = read_nwb(path, bin_size=0.05)
    activity = data["activity"]
    assert activity.dims == ("trial", "time", "unit") and activity.shape == (N_TRIALS, 10, 2)
    assert activity.attrs["units"] == "spikes/second"
    for trial in (0, 7):
        for unit in (0, 1):
            times = np.asarray(spikes[unit]) - starts[trial]
            counts = [np.sum((times >= k * 0.05) & (times < (k + 1) * 0.05)) for k in range(10)]
            np.testing.assert_allclose(activity.values[trial, :, unit], np.array(counts) / 0.05)
    assert list(data["condition"].values[:2]) == ["left", "right"]
    left = activity.values[data["condition"].values == "left"].mean(axis=(0, 1))
    np.testing.assert_allclose(left, RATES["left"], rtol=0.35)  # Poisson: 3 s per condition


def test_time_series_bins_are_means_of_the_samples(tmp_path):
    path, _, starts = write_nwb(tmp_path / "rec.nwb")
    data = read_nwb(path, source="sine", bin_size=0.02, window=(-0.1, 0.3), align="cue_time")
    values = data["activity"].values[:, :, 0]
    assert values.shape == (N_TRIALS, 20)
    np.testing.assert_allclose(data["time"].values, -0.1 + 0.02 * np.arange(20))
    # reference: the mean of the 20 samples t_j = begin + (j + 0.5) ms in each bin
    for trial in (0, 5):
        begin = starts[trial] + 0.1 - 0.1
        samples = np.sin(OMEGA * (begin + (np.arange(400) + 0.5) * 1e-3))
        np.testing.assert_allclose(values[trial], samples.reshape(20, 20).mean(axis=1),
                                   atol=1e-9)


def test_convert_analyze_and_compare_nwb_from_the_command_line(tmp_path, capsys):
    path, _, _ = write_nwb(tmp_path / "rec.nwb")
    converted = tmp_path / "rec.nc"
    assert cli.main(["convert", str(path), "-o", str(converted), "--bin", "25 ms",
                     "--quiet"]) == 0
    assert xr.load_dataset(converted)["activity"].shape == (N_TRIALS, 20, 2)
    assert cli.main(["analyze", str(path), "--bin", "25 ms", "--geometry", "-o",
                     str(tmp_path / "a.nc"), "--quiet"]) == 0
    assert "participation_ratio" in xr.load_dataset(tmp_path / "a.nc")
    assert cli.main(["compare", str(converted), str(path), "--bin", "25 ms", "--metric",
                     "cka", "--shuffles", "3"]) == 0
    assert "cka" in capsys.readouterr().out


def test_nwb_problems_are_named(tmp_path, capsys):
    path, _, _ = write_nwb(tmp_path / "no_trials.nwb", with_trials=False)
    with pytest.raises(InputError, match="no trials table"):
        read_nwb(path)
    good, _, _ = write_nwb(tmp_path / "rec.nwb")
    with pytest.raises(InputError, match="no TimeSeries 'lfp'.*sine"):
        read_nwb(good, source="lfp")
    with pytest.raises(InputError, match="no numeric column 'go_time'"):
        read_nwb(good, align="go_time")
    not_nwb = tmp_path / "text.nwb"
    not_nwb.write_text("hello")
    assert cli.main(["convert", str(not_nwb), "-o", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert str(not_nwb) in err and "cannot read as NWB" in err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["convert", str(good), "-o", str(tmp_path / "x.nc"), "--bin", "10"])
    assert exit_.value.code == 2
    assert "needs a unit of second" in capsys.readouterr().err


def test_series_units_window_edges_and_alignment(tmp_path):
    """Reference: NWB's value = data * conversion + offset; bins beyond the recording are
    NaN; the default window runs from the alignment to the end of the shortest trial."""
    nwbfile = pynwb.NWBFile(session_description="s", identifier="conversion",
                            session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
    nwbfile.add_acquisition(pynwb.TimeSeries(
        name="raw", data=np.full(3000, 100, dtype=np.int16), unit="volts", rate=1000.0,
        starting_time=0.0005, conversion=1e-3, offset=0.5))
    nwbfile.add_trial_column("go", "go cue (s)")
    for start in (0.5, 2.5):  # the second trial runs past the recording's end (3 s)
        nwbfile.add_trial(start_time=start, stop_time=start + 1.0, go=start + 0.2)
    path = tmp_path / "conv.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    data = read_nwb(path, source="raw", bin_size=0.1, align="go")
    values = data["activity"].values[:, :, 0]
    assert values.shape == (2, 8)  # 0.8 s from the go cue to the end of each trial
    np.testing.assert_allclose(values[0], 0.6)
    assert np.isfinite(values[1, :3]).all() and np.isnan(values[1, 4:]).all()


def write_small(path, spikes=((1.1, 1.2, 2.1),), **kwargs):
    """A small NWB file (`hostile.make_corpus.nwb`: trials, trial columns, units, an
    optional TimeSeries ``lfp``)."""
    return nwb(spikes=spikes, **kwargs)(path)


@pytest.mark.parametrize("kwargs, options, key, message", [
    ({"trials": [(1.0, 1.5), (np.nan, 2.5)]}, {}, "trials.start_time", "NaN or infinite"),
    ({"trials": [(1.0, np.inf)] * 2}, {}, "trials.stop_time", "NaN or infinite"),
    ({"trials": [(1.0, 1.5), (2.0, 1.0)]}, {}, "trials.stop_time", "stops before it starts"),
    ({"columns": {"cue": [1.1, np.nan, 1.1, 1.1]}}, {"align": "cue"}, "trials.cue",
     "NaN or infinite"),
    ({"spikes": [(1.1, np.nan)]}, {}, "units.spike_times", "NaN or infinite"),
    ({"series": np.zeros(0)}, {"source": "lfp"}, "lfp.data", "holds no samples"),
    ({"series": np.array(["a"] * 10)}, {"source": "lfp"}, "lfp.data", "holds text"),
    ({"series": np.array([0.0, np.inf] * 5)}, {"source": "lfp"}, "lfp.data",
     "NaN or infinite"),
    ({"series": np.zeros(4), "timestamps": np.array([0.0, 2.0, 1.0, 3.0])},
     {"source": "lfp"}, "lfp.timestamps", "not in increasing order"),
    ({"series": np.zeros(4), "timestamps": np.array([0.0, np.nan, 1.0, 3.0])},
     {"source": "lfp"}, "lfp.timestamps", "NaN or infinite"),
])
def test_damaged_numbers_in_the_file_are_named(tmp_path, kwargs, options, key, message):
    path = write_small(tmp_path / "bad.nwb", **kwargs)
    with pytest.raises(InputError, match=message) as error:
        read_nwb(path, bin_size=0.1, **options)
    assert error.value.file == str(path) and error.value.key == key


@pytest.mark.parametrize("options, key, message", [
    ({"bin_size": 1e-300}, "--bin", "too many bins"),
    ({"bin_size": 1e-9}, "--bin", "needs about .* of memory"),  # ~75 GiB: refused first
    ({"bin_size": float("nan")}, "--bin", "finite"),
    ({"bin_size": float("inf")}, "--bin", "finite"),
    ({"window": (-1e9, 1e9)}, "--window", "of memory|too many bins"),
    ({"window": (0.0, float("inf"))}, "--window", "finite"),
    ({"window": (0.5, 0.1)}, "--window", "empty"),
    ({"align": "x" * 500}, "--align", "no numeric column 'x{57}\\.\\.\\.'"),
])
def test_absurd_bins_and_windows_fail_before_allocating(tmp_path, monkeypatch, options, key,
                                                        message):
    import bioplast.limits
    monkeypatch.setattr(bioplast.limits, "available_memory", lambda: 1 << 30)  # 1 GiB
    path = write_small(tmp_path / "rec.nwb")
    with pytest.raises(InputError, match=message) as error:
        read_nwb(path, **options)
    assert error.value.key == key and len(str(error.value)) < 300


def test_a_fifo_is_not_read_as_nwb(tmp_path, capsys):
    fifo = tmp_path / "pipe.nwb"
    os.mkfifo(fifo)
    assert cli.main(["convert", str(fifo), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert str(fifo) in err and "not a regular file" in err
