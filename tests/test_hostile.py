"""The error contract of the command line against a corpus of hostile inputs (issue 14).

Every case of ``tests/hostile/make_corpus.py`` runs in this process (``bioplast.cli.main``)
in its own directory, with stdout and stderr captured at the file-descriptor level (so
that warnings printed by C libraries are seen too), under a 30 s alarm. Bad input must
give exit code 2 and exactly one non-empty line on stderr, starting ``bioplast: error:``
and naming the file, key or flag; never a traceback, never a secret file's content, never a
payload run; the inputs unchanged; a denial-of-service input refused within 10 s.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bioplast import cli

_SPEC = importlib.util.spec_from_file_location(
    "hostile_corpus", Path(__file__).resolve().parent / "hostile" / "make_corpus.py")
corpus = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = corpus
_SPEC.loader.exec_module(corpus)

ALARM_SECONDS = 20.0
DOS_SECONDS = 10.0
USAGE_ERROR = re.compile(r"^bioplast \w+: error: ")


class HostileTimeout(BaseException):
    """The case ran past the alarm (a BaseException: the CLI must not turn it into a line)."""


def _expire(signum, frame):
    raise HostileTimeout(f"still running after {ALARM_SECONDS:g} s")


def run_cli(argv: list[str], seconds: float = ALARM_SECONDS):
    """``(exit code or 'timeout', elapsed seconds)`` of ``bioplast.cli.main(argv)``."""
    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    except HostileTimeout:
        code = "timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, time.monotonic() - started


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """The results cases copy and damage, computed once (~30 s)."""
    return corpus.make_base(tmp_path_factory.mktemp("hostile_base"))


def _summary(code, elapsed, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    first = lines[0] if lines else "(empty)"
    last = lines[-1] if lines else "(empty)"
    return (f"exit {code}, {elapsed:.1f} s, {len(lines)} stderr line(s); first: {first[:300]!r}"
            + (f"; last: {last[:300]!r}" if len(lines) > 1 else ""))


@pytest.mark.parametrize("case", corpus.CASES, ids=[c.id for c in corpus.CASES])
def test_hostile_input(case, base, tmp_path, monkeypatch, capfd):
    directory = corpus.write_case(case, tmp_path / "case", base)
    inputs = case.input_paths(directory)
    before = {path: corpus.sha256(path) for path in inputs}
    monkeypatch.chdir(directory)
    capfd.readouterr()
    code, elapsed = run_cli(case.argv_in(directory))
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    problems = []
    if "Traceback" in out + err:
        problems.append("a traceback was printed")
    if corpus.SECRET in out + err:
        problems.append("the secret file's content was printed")
    if (directory / corpus.MARKER).exists():
        problems.append("a payload ran (the marker file exists)")
    changed = [path.name for path in inputs if corpus.sha256(path) != before[path]]
    if changed:
        problems.append(f"inputs changed: {', '.join(changed)}")
    if case.dos and elapsed >= DOS_SECONDS:
        problems.append(f"took {elapsed:.1f} s (a DoS input must fail within {DOS_SECONDS:g} s)")
    if code not in case.code:
        problems.append(f"exit code {code}, expected {' or '.join(map(str, case.code))}")
    elif code == 2:
        errors = [line for line in lines if line.startswith("bioplast: error:")]
        if case.usage and lines and USAGE_ERROR.match(lines[-1]):
            pass  # argparse: usage text, then 'bioplast CMD: error: ...'
        elif not errors:
            problems.append("no line starts with 'bioplast: error:'")
        else:
            if len(lines) != 1:
                problems.append(f"{len(lines)} non-empty stderr lines, expected exactly one")
            if case.expect and not any(name in errors[-1] for name in case.expect):
                problems.append(f"the error line names none of {case.expect}")
        leftovers = [p.name for p in directory.rglob("*.tmp")]
        if leftovers:
            problems.append(f"temporary files left behind: {', '.join(leftovers)}")
    assert not problems, "; ".join(problems) + " -- " + _summary(code, elapsed, err)


def test_corpus_is_large_and_unique():
    ids = [c.id for c in corpus.CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 70


# ----------------------------------------------------------------------------- controls

@pytest.mark.parametrize("argv", [["info", "r.nc"], ["info", "s.nc"], ["info", "sw.nc"]])
def test_control_valid_results_are_read(argv, base, tmp_path, monkeypatch, capfd):
    """The undamaged base files work: the failures above come from the damage."""
    for key, name in (("train", "r.nc"), ("sim", "s.nc"), ("sweep", "sw.nc")):
        shutil.copyfile(base[key], tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code, elapsed = run_cli(argv)
    out, err = capfd.readouterr()
    assert code == 0, _summary(code, elapsed, err)


def test_control_valid_checkpoint_resumes(base, tmp_path, monkeypatch, capfd):
    (tmp_path / "p.yaml").write_text(corpus.PROTOCOL)
    shutil.copyfile(base["checkpoint"], tmp_path / "out.nc.checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    code, elapsed = run_cli(["run", "p.yaml", "-o", "out.nc", "--resume", "--quiet"])
    out, err = capfd.readouterr()
    assert code == 0, _summary(code, elapsed, err)
    assert "Traceback" not in err


# --------------------------------------------------------------------------- sweep shards

def _damage_shard(kind: str, path: Path) -> None:
    if kind == "truncated":
        corpus.truncate(0.4)(path)
    elif kind == "random-bytes":
        corpus.random_bytes(3000)(path)
    elif kind == "other-netcdf":
        path.unlink()
        corpus.other_netcdf(path)
    else:
        raise ValueError(kind)


@pytest.mark.parametrize("kind", ["truncated", "other-netcdf"])
def test_damaged_shard_is_trained_again(kind, base, tmp_path, monkeypatch, capfd):
    """A finished shard that was damaged: the re-run trains its point again (exit 0), says
    so on stderr, keeps the intact shard, and writes the complete result."""
    shutil.copyfile(base["protocol"], tmp_path / "p.yaml")
    shards = tmp_path / "sw.nc.shards"
    shutil.copytree(base["sweep_shards"], shards)
    damaged, intact = sorted(shards.glob("*.nc"))[:2]
    _damage_shard(kind, damaged)
    intact_digest = corpus.sha256(intact)
    protocol_digest = corpus.sha256(tmp_path / "p.yaml")
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code, elapsed = run_cli(["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1", "-o",
                             "sw.nc", "--quiet"], seconds=120)
    out, err = capfd.readouterr()
    assert code == 0, _summary(code, elapsed, err)
    assert "Traceback" not in out + err
    assert damaged.name in err, f"stderr does not name the damaged shard: {err!r}"
    assert corpus.sha256(intact) == intact_digest, "the intact shard was rewritten"
    assert corpus.sha256(tmp_path / "p.yaml") == protocol_digest
    result = xr.load_dataset(tmp_path / "sw.nc")
    reference = xr.load_dataset(base["sweep"])
    assert list(result["seed"].values) == [0, 1]
    assert (result["network_status"].values == "complete").all()
    np.testing.assert_array_equal(result["W_rec"].values, reference["W_rec"].values)
