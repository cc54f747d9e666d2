"""Bad model files: one clear line naming the file and the line or key, exit code 2, no
traceback, nothing executed. One test per case of the foundation issue, plus neighbours."""

import re

import pytest

import bioplast
from bioplast import cli

VALID = """\
name: tiny
equations: |
  dr/dt = (-r + tanh(I_rec + I_in + b)) / tau : 1
  b : 1 (trainable)
  tau : second (constant, shared)
couplings:
  W_rec: {source: r, target: I_rec, autapses: false}
  W_in: {source: input, target: I_in}
readout: {source: r}
defaults: {n_units: 4, n_inputs: 1, n_outputs: 1, tau: 10 ms, dt: 1 ms}
"""


def run_cli(tmp_path, capsys, text, *extra):
    path = tmp_path / "bad_model.yaml"
    path.write_text(text)
    code = cli.main(["simulate", str(path), "-o", str(tmp_path / "out.nc"), "--steps", "3",
                     "--quiet", *extra])
    err = capsys.readouterr().err
    return code, err, str(path)


def assert_clear_error(code, err, path, line=None, key=None, words=()):
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    message = lines[0]
    assert message.startswith("bioplast: error: " + path), message
    if line is not None:
        assert f"{path}:{line}:" in message, message
    if key is not None:
        assert key in message, message
    for word in words:
        assert word in message, message
    return message


def test_valid_model_runs(tmp_path, capsys):
    code, err, _ = run_cli(tmp_path, capsys, VALID)
    assert code == 0, err
    assert (tmp_path / "out.nc").exists()


def test_malformed_yaml(tmp_path, capsys):
    text = VALID.replace("  W_in: {source: input, target: I_in}",
                         "  W_in: {source: input, target: I_in")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=9, words=["malformed YAML"])


def test_equation_brian2_cannot_parse(tmp_path, capsys):
    text = VALID.replace("dr/dt = (-r + tanh(I_rec + I_in + b)) / tau : 1",
                         "dr/dt = (-r + tanh(I_rec + I_in + b) / tau : 1")
    message = assert_clear_error(*run_cli(tmp_path, capsys, text), line=3, key="equations")
    assert "cannot parse equation" in message


def test_unparseable_equation_on_a_later_line(tmp_path, capsys):
    text = VALID.replace("  b : 1 (trainable)", "  b : : 1 (trainable)")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=4, key="equations")


def test_unit_mismatch(tmp_path, capsys):
    text = VALID.replace("tau : second (constant, shared)", "tau : 1 (constant, shared)")
    text = text.replace("tau: 10 ms", "tau: 10")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=3,
                       words=["unit mismatch", "'r'"])


def test_unit_mismatch_of_a_value(tmp_path, capsys):
    text = VALID.replace("tau: 10 ms", "tau: 10 mV")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=10, key="defaults.tau",
                       words=["volt", "second"])


def test_unknown_variable_in_an_equation(tmp_path, capsys):
    text = VALID.replace("I_rec + I_in + b", "I_rec + I_in + b + gain")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=3,
                       words=["unknown variable 'gain'"])


def test_coupling_from_a_missing_variable(tmp_path, capsys):
    text = VALID.replace("W_rec: {source: r,", "W_rec: {source: rate,")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=7,
                       key="couplings.W_rec.source", words=["'rate'"])


def test_coupling_to_a_variable_the_equations_do_not_use(tmp_path, capsys):
    text = VALID.replace("target: I_rec,", "target: I_recurrent,")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=7,
                       key="couplings.W_rec.target", words=["I_recurrent"])


def test_missing_required_key_equations(tmp_path, capsys):
    text = "\n".join(l for l in VALID.splitlines() if not l.startswith(("equations", "  d",
                                                                         "  b :", "  tau :")))
    assert_clear_error(*run_cli(tmp_path, capsys, text), words=["missing required key",
                                                                "'equations'"])


def test_missing_required_key_of_a_coupling(tmp_path, capsys):
    text = VALID.replace("W_in: {source: input, target: I_in}", "W_in: {target: I_in}")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=8, key="couplings.W_in",
                       words=["missing required key 'source'"])


def test_missing_time_step(tmp_path, capsys):
    text = VALID.replace(", dt: 1 ms}", "}")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=10, key="defaults",
                       words=["'dt'"])


@pytest.mark.parametrize("value", ["start_at_one", 1, "[]"])
def test_bad_autapses_value(tmp_path, capsys, value):
    text = VALID.replace("autapses: false", f"autapses: {value}")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=7, key="couplings.W_rec.autapses",
                       words=["true (trained), false (kept at zero) or start_at_zero"])


@pytest.mark.parametrize("dt", ["-1 ms", "0 ms", "0 * ms"])
def test_negative_or_zero_dt(tmp_path, capsys, dt):
    text = VALID.replace("dt: 1 ms", f"dt: {dt}")
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=10, key="defaults.dt",
                       words=["positive"])


def test_unknown_top_level_key(tmp_path, capsys):
    text = VALID + "couplins: {}\n"
    assert_clear_error(*run_cli(tmp_path, capsys, text), line=11, key="couplins")


def test_bad_override_names_the_override(tmp_path, capsys):
    code, err, path = run_cli(tmp_path, capsys, VALID, "--set", "dt=-2 ms")
    assert_clear_error(code, err, path, key="override dt", words=["positive"])


SMUGGLED = [
    ("equation", lambda t, cmd: t.replace("dr/dt = (-r + tanh(I_rec + I_in + b)) / tau : 1",
                                          f"dr/dt = (-r + __import__('os').system('{cmd}'))"
                                          " / tau : 1")),
    ("unit", lambda t, cmd: t.replace("b : 1 (trainable)", f"b : __import__('os').system("
                                                           f"'{cmd}') (trainable)")),
    ("value", lambda t, cmd: t.replace("tau: 10 ms", f"tau: \"__import__('os').system('{cmd}')\"")),
    ("yaml tag", lambda t, cmd: t.replace("name: tiny", f"name: !!python/object/apply:os.system "
                                                         f"['{cmd}']")),
    ("init", lambda t, cmd: t.replace("autapses: false}", "autapses: false, init: {kind: "
                                      f"\"__import__('os').system('{cmd}')\"}}")),
]


@pytest.mark.parametrize("where,smuggle", SMUGGLED, ids=[s[0] for s in SMUGGLED])
def test_python_smuggled_into_the_model_is_rejected_never_executed(tmp_path, capsys, where,
                                                                   smuggle):
    marker = tmp_path / "PWNED"
    text = smuggle(VALID, f"touch {marker}")
    assert text != VALID
    code, err, path = run_cli(tmp_path, capsys, text)
    assert_clear_error(code, err, path)
    assert not marker.exists()
    assert re.search(r":\d+:", err), err  # located at a line


def test_errors_from_python_are_input_errors(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(VALID.replace("I_rec + I_in + b", "I_rec + I_in + b + gain"))
    with pytest.raises(bioplast.InputError) as info:
        bioplast.load_model(path)
    assert info.value.file == str(path) and info.value.line == 3


def test_unknown_shipped_model_name_lists_the_models():
    with pytest.raises(bioplast.InputError, match="leaky_rate"):
        bioplast.load_model("no_such_model")
