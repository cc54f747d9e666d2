"""NWB recordings cut into (trial, time, unit): spike counts checked against counting by hand,
a sampled sine against its analytic bin means; the CLI reads .nwb files directly."""

from datetime import datetime, timezone

import numpy as np
import pytest
import xarray as xr

pynwb = pytest.importorskip("pynwb")

from bioplast import cli  # noqa: E402
from bioplast.analysis.nwb import read_nwb  # noqa: E402
from bioplast.errors import InputError  # noqa: E402

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
