"""The bounds of `bioplast.limits` and the file rules of `bioplast.files`, each against the
case it exists for: the expression, document or file that would hang or destroy something
without it, and the ordinary one it must let through."""

import os
import subprocess
import sys
import time

import pytest

from bioplast import limits
from bioplast.errors import InputError
from bioplast.files import atomic_write, refuse_overwrite, remove_stale_temporaries, _host
from bioplast.limits import ExpressionTooLarge, check_expression
from bioplast.yamlfile import YamlDocument, yaml_value


@pytest.mark.parametrize("code", [
    "(-x + I_rec + I_in)/tau", "-x/tau + x**2 - (x/theta)**n", "1/(1 + exp(-4*(x - 0.5)))",
    "x**-2 + x**0.5", "metre**-2", "volt**64", "(x + y + 1)**8 * (x - y)**8",
    "2**10 * x", "x**(1/3)",
])
def test_ordinary_expressions_pass(code):
    check_expression(code)


@pytest.mark.parametrize("code, words", [
    ("(x + 1)**100000", "exponent of 100000"),
    ("x**99999999999", "exponent"),
    ("volt**(10**10)", r"exponent of 1e\+10"),
    ("metre**9999999", "exponent"),
    ("2**2**2**2**2**2", "exponent"),           # folded without computing the tower
    ("((((x + 1)**16)**16)**16)", "degree above 256"),
    ("(" * 60 + "x" + ")" * 60, "nested more than 50"),
    ("x + " * 3000 + "x", "longer than 10000"),
])
def test_expressions_that_would_not_finish_are_refused_at_once(code, words):
    started = time.perf_counter()
    with pytest.raises(ExpressionTooLarge, match=words):
        check_expression(code)
    assert time.perf_counter() - started < 0.5


def billion_laughs(levels=9, width=9) -> str:
    text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in range(1, levels):
        text += f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]\n"
    return text


def test_an_alias_bomb_is_refused_without_expanding_it():
    started = time.perf_counter()
    with pytest.raises(InputError, match="expands to more than 100000 values") as error:
        YamlDocument(billion_laughs(), "bomb.yaml")
    assert error.value.file == "bomb.yaml" and error.value.line is not None
    assert time.perf_counter() - started < 1.0
    with pytest.raises(InputError, match="expands"):
        yaml_value("{" + billion_laughs().strip().replace("\n", ", ") + "}", "--set")


def test_aliases_within_the_bound_and_deep_nesting():
    YamlDocument(billion_laughs(levels=3), "fine.yaml")  # 1 + 9 + 81 + 729 values: fine
    with pytest.raises(InputError, match="nested"):
        YamlDocument("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")


def test_memory_is_checked_before_allocating():
    limits.check_memory(1024, "a small array")
    with pytest.raises(InputError, match="needs about .* more than is available") as error:
        limits.check_memory(limits.array_bytes(10**6, 10**6, 10**6), "an absurd array",
                            file="m.yaml", key="n_units")
    assert str(error.value).startswith("m.yaml: n_units: ")


def test_time_bound_stops_a_long_block_and_keeps_an_outer_alarm():
    import signal
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        started = time.perf_counter()
        with pytest.raises(limits.TimeBoundExceeded):
            with limits.time_bound(0.2, "a loop"):
                while True:
                    pass
        assert time.perf_counter() - started < 1.0
        assert 3.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 5.0  # the outer alarm is back
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired


def test_an_output_that_is_an_input_by_any_spelling_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "m.yaml"
    source.write_text("x: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.yaml").symlink_to(source)
    os.link(source, tmp_path / "hard.yaml")
    for output in ["m.yaml", "./m.yaml", "sub/../m.yaml", str(source), "link.yaml",
                   "hard.yaml"]:
        with pytest.raises(InputError, match="would overwrite the input"):
            refuse_overwrite({"-o": output}, [source])
    refuse_overwrite({"-o": "other.nc"}, [source])
    with pytest.raises(InputError, match="lies in the shard directory"):
        refuse_overwrite({"-o": "o.nc"}, ["o.nc.shards/p.yaml"],
                         directories={"the shard directory": "o.nc.shards"})
    assert source.read_text() == "x: 1\n"


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    dead = tmp_path / f".out.nc.{_host()}-{gone}.abc.tmp"
    alive = tmp_path / f".out.nc.{_host()}-{os.getppid()}.def.tmp"
    elsewhere = tmp_path / f".out.nc.otherhost-{gone}.ghi.tmp"
    for path in (dead, alive, elsewhere):
        path.write_bytes(b"partial")
    with atomic_write(tmp_path / "out.nc") as temporary:
        temporary.write_bytes(b"complete")
    assert not dead.exists() and alive.exists() and elsewhere.exists()
    assert (tmp_path / "out.nc").read_bytes() == b"complete"
    assert remove_stale_temporaries(tmp_path) == []
