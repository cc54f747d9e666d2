"""A corpus of hostile inputs for the ``bioplast`` command line (issue 14).

Every case is one line of data: an id, the command line, the files it needs (written into
the case's own directory), the names one of which its error line must mention, and
whether it is a denial-of-service case (bounded to 10 s). The contract each case checks:

- bad input: exit code 2 and exactly one non-empty line on stderr, starting with
  ``bioplast: error:`` and naming the file and/or the key or flag;
- never a Python traceback; never the content of a secret file; never code run from a file
  (a marker file that a payload would create must not appear);
- the input files are unchanged (sha256), and a DoS input fails within 10 s.

Some cases need results that bioplast computed (a training result, its checkpoint, a
simulation result, a sweep result): `make_base` writes those once, and the file specs of a
case refer to them as ``Base("train")`` etc. (copied, then possibly damaged).

Use from the command line to look at the corpus by hand::

    python tests/hostile/make_corpus.py /tmp/corpus      # writes /tmp/corpus/<case id>/
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

SECRET = "SECRETHASH"
SHADOW = f"root:$6${SECRET}$aa0bb1cc2:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
PASSWD = (f"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:{SECRET}:/usr/sbin:/usr/sbin/nologin\n"
          "bin:x:2:2:bin:/bin:/usr/sbin/nologin\n")
MARKER = "pwned"  # a payload that ran would create this file in the case directory

# ----------------------------------------------------------------------------- texts

#: a small valid model (4 units, 2 inputs): equation on line 4
MODEL = """\
name: tiny
description: a small leaky network for hostile-input tests
equations: |
  dx/dt = (-x + I_rec + I_in + b) / tau : 1
  b : 1 (trainable)
  tau : second (constant, shared)
couplings:
  W_rec: {source: x, target: I_rec, init: {kind: scaled_normal, gain: 0.9}}
  W_in: {source: input, target: I_in}
readout: {source: x}
initial: {x: {kind: normal, std: 0.1}}
defaults: {n_units: 4, n_inputs: 2, n_outputs: 1, tau: 10 ms, dt: 1 ms}
"""
EQUATION = "  dx/dt = (-x + I_rec + I_in + b) / tau : 1\n"

#: a small valid protocol (a few seconds of training)
PROTOCOL = """\
name: tiny
seed: 0
model: {file: leaky_rate, n_units: 8, readout.activation: sigmoid}
task: {name: delayed_cue, cue: 30 ms, delay: 150 ms, response: 50 ms}
rule: {name: bptt, optimizer: {name: adam, lr: 0.003}}
training: {epochs: 1, steps_per_epoch: 2, batch_size: 8, eval_batches: 1}
backend: {name: torch, dtype: float32}
record: {trials: 8}
"""


def model(equation: str | None = None, extra: str = "", defaults: str | None = None,
          head: str = "", tail: str = "") -> str:
    """MODEL with its equation line, extra equation lines, defaults line or text before /
    after replaced or added."""
    text = MODEL
    if equation is not None:
        text = text.replace(EQUATION, f"  {equation}\n")
    if extra:
        text = text.replace("  tau : second (constant, shared)\n",
                            f"  tau : second (constant, shared)\n  {extra}\n")
    if defaults is not None:
        text = text.replace("defaults: {n_units: 4, n_inputs: 2, n_outputs: 1, tau: 10 ms, "
                            "dt: 1 ms}\n", f"defaults: {defaults}\n")
    return head + text + tail


def protocol(**lines: str) -> str:
    """PROTOCOL with the top-level line of each key replaced (value: the new line(s);
    '' drops it); keys not in PROTOCOL are appended."""
    out = []
    for line in PROTOCOL.splitlines(keepends=True):
        key = line.split(":", 1)[0]
        if key in lines:
            new = lines.pop(key)
            if new:
                out.append(new.rstrip("\n") + "\n")
        else:
            out.append(line)
    out.extend(v.rstrip("\n") + "\n" for v in lines.values() if v)
    return "".join(out)


def alias_bomb(levels: int = 9, width: int = 9, prefix: str = "a") -> str:
    """YAML 'billion laughs' anchors: ``{prefix}{levels}`` expands to width**levels items."""
    lines = [f'{prefix}0: &{prefix}0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"{prefix}{i}: &{prefix}{i} [" + ", ".join([f"*{prefix}{i - 1}"] * width)
                     + "]")
    return "\n".join(lines) + "\n"


def mapping_bomb(levels: int = 30) -> str:
    """Anchored mappings, each holding the previous one twice: 2**levels values."""
    lines = ["m0: &m0 {k: v}"]
    for i in range(1, levels + 1):
        lines.append(f"m{i}: &m{i} {{l: *m{i - 1}, r: *m{i - 1}}}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- file specs

@dataclass(frozen=True)
class Base:
    """A copy of a result computed once by `make_base` ('train', 'checkpoint', 'sim',
    'sweep', 'recording'), optionally damaged by ``then(path)``."""
    key: str
    then: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class Link:
    """A symbolic (or, with ``hard``, a hard) link to ``target`` (relative to the case)."""
    target: str
    hard: bool = False


DIRECTORY = object()  # an empty directory


def writer(function: Callable[[Path], None]):
    """A file spec written by ``function(path)``."""
    return function


# --------------------------------------------------------------- .npy and pickle payloads

class Payload:
    """Unpickling this creates the marker file (``open(path, 'w')``): a reader that
    unpickles untrusted data would leave the marker behind."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def npy_header(header: dict | str, body: bytes = b"", version=(1, 0),
               length: int | None = None) -> Callable[[Path], None]:
    """A .npy file with a hand-written header (a dict, or raw header text) and ``body``."""
    def write(path: Path) -> None:
        text = header if isinstance(header, str) else repr(header)
        data = text.encode("latin1")
        if version == (1, 0):
            pad = (64 - (10 + len(data) + 1) % 64) % 64
            data = data + b" " * pad + b"\n"
            size = (len(data) if length is None else length).to_bytes(2, "little")
        else:
            pad = (64 - (12 + len(data) + 1) % 64) % 64
            data = data + b" " * pad + b"\n"
            size = (len(data) if length is None else length).to_bytes(4, "little")
        path.write_bytes(b"\x93NUMPY" + bytes(version) + size + data + body)
    return write


def npy(array_of: Callable[[Path], np.ndarray], pickle: bool = False):
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, array_of(path), allow_pickle=pickle)
    return write


def npy_payload(path: Path) -> np.ndarray:
    array = np.empty(2, dtype=object)
    array[0] = Payload(path.parent / MARKER)
    array[1] = 1.0
    return array


def pickled_payload(path: Path) -> None:
    import pickle
    path.write_bytes(pickle.dumps({"format": 2, "params": Payload(path.parent / MARKER)}))


def torch_payload(path: Path) -> None:
    import torch
    torch.save({"format": 2, "params": {"W_rec": Payload(path.parent / MARKER)}}, path)


def nan_inputs(shape=(2, 5, 2), value=np.nan):
    def make(_):
        array = np.zeros(shape)
        array[0, 1, 0] = value
        return array
    return make


# ----------------------------------------------------------------- damaging result files

def truncate(fraction: float):
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return damage


def random_bytes(n: int = 40000, seed: int = 0):
    def write(path: Path) -> None:
        path.write_bytes(np.random.default_rng(seed).bytes(n))
    return write


def flip_bytes(start_fraction: float, n: int = 64):
    """Overwrite ``n`` bytes from ``start_fraction`` of the file with random bytes."""
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        start = int(len(data) * start_fraction)
        data[start:start + n] = np.random.default_rng(1).bytes(min(n, len(data) - start))
        path.write_bytes(bytes(data))
    return damage


def hdf5_not_netcdf(path: Path) -> None:
    import h5py
    with h5py.File(path, "w") as handle:
        group = handle.create_group("deep/er")
        group.create_dataset("values", data=np.arange(12.0).reshape(3, 4))
        handle.attrs["note"] = "an HDF5 file that is not a netCDF file"


def other_netcdf(path: Path) -> None:
    import xarray as xr
    xr.Dataset({"temperature": (("x", "y"), np.ones((3, 4)))},
               attrs={"title": "not a bioplast result"}).to_netcdf(path)


def set_attr(**attrs: Any):
    """Set (value) or delete (None) global attributes with netCDF4, in place."""
    def damage(path: Path) -> None:
        import netCDF4
        with netCDF4.Dataset(path, "a") as handle:
            for name, value in attrs.items():
                if value is None:
                    if name in handle.ncattrs():
                        handle.delncattr(name)
                else:
                    handle.setncattr(name, value)
    return damage


def edit_dataset(function: Callable):
    """Rewrite the file with ``function(dataset) -> dataset`` (xarray)."""
    def damage(path: Path) -> None:
        import xarray as xr
        dataset = function(xr.load_dataset(path))
        path.unlink()
        dataset.to_netcdf(path)
    return damage


def replace_variable(name: str, dims: tuple, values: np.ndarray):
    def change(dataset):
        dataset = dataset.drop_vars(name)
        dataset[name] = (dims, values)
        return dataset
    return edit_dataset(change)


def poison_variable(name: str, value=np.nan):
    def change(dataset):
        data = dataset[name].values.copy()
        data.flat[0] = value
        dataset[name] = (dataset[name].dims, data, dataset[name].attrs)
        return dataset
    return edit_dataset(change)


def drop_variable(name: str):
    return edit_dataset(lambda dataset: dataset.drop_vars(name))


def recording(path: Path, *, poison: Callable[[np.ndarray], None] | None = None,
              times: np.ndarray | None = None, trials: int = 6, steps: int = 20,
              units: int = 5) -> None:
    """A recording: ``activity (trial, time, unit)`` with a ``time`` coordinate in
    seconds (1 ms steps, within a `simulate --steps 20` result's time) and condition
    labels ``cue``."""
    import xarray as xr
    rng = np.random.default_rng(3)
    activity = np.zeros((trials, steps, units))
    for step in range(1, steps):  # AR(1): autocorrelated, so timescales can be fitted
        activity[:, step] = 0.8 * activity[:, step - 1] + rng.normal(size=(trials, units))
    if poison is not None:
        poison(activity)
    time = np.arange(steps) * 1e-3 if times is None else times
    xr.Dataset({"activity": (("trial", "time", "unit"), activity),
                "cue": (("trial",), np.arange(trials) % 2)},
               coords={"time": ("time", time, {"units": "second"})}).to_netcdf(path)


def rec(**options):
    return writer(lambda path: recording(path, **options))


def set_nan(array):
    array[0, 3, 1] = np.nan
    array[2, 7, 0] = np.nan


def set_all_nan(array):
    array[:] = np.nan


def set_inf(array):
    array[1, 2, 3] = np.inf


def set_constant(array):
    array[:] = 1.0


# ------------------------------------------------------------------ damaging checkpoints

def edit_checkpoint(function: Callable[[dict], Any]):
    """Load the checkpoint (weights_only), let ``function`` change it, save it."""
    def damage(path: Path) -> None:
        import torch
        saved = torch.load(path, weights_only=True)
        saved = function(saved) or saved
        torch.save(saved, path)
    return damage


def _wrong_param_shape(saved):
    import torch
    saved["params"]["W_rec"] = torch.zeros(1, 3, 3)
    saved["complete"] = False


def _missing_key(saved):
    del saved["optimizer"]
    saved["complete"] = False


def _bad_rng(saved):
    saved["rng"] = ['{"bit_generator": "PCG64", "state": "not a state"}']
    saved["complete"] = False


def _rng_not_json(saved):
    saved["rng"] = ["{{{{"]
    saved["complete"] = False


def _bad_torch_generator(saved):
    import torch
    saved["generator"] = [torch.zeros(3, dtype=torch.uint8)]
    saved["complete"] = False


def _huge_epoch(saved):
    saved["next_epoch"] = 10**30
    saved["complete"] = False


def _epoch_text(saved):
    saved["next_epoch"] = "one"
    saved["complete"] = False


def _not_a_dict(saved):
    return [1, 2, 3]


def _other_format(saved):
    saved["format"] = 999


def _unfinished(saved):
    saved["complete"] = False
    saved["next_epoch"] = 0


def _bad_history(saved):
    saved["history"] = [{"loss": "garbage"}]
    saved["complete"] = False


# ------------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One hostile input. ``argv`` and file texts may hold ``{dir}`` (the case's absolute
    directory). ``inputs``: the files that must not change (default: every file the case
    writes, except links' targets outside the case). ``expect``: at least one must appear in
    the error line. ``code``: the accepted exit codes. ``usage``: an argparse usage error
    (usage text + ``bioplast CMD: error: ...``, exit 2) is acceptable."""
    id: str
    argv: list[str]
    files: dict[str, Any] = field(default_factory=dict)
    expect: list[str] = field(default_factory=list)
    dos: bool = False
    code: tuple[int, ...] = (2,)
    usage: bool = False
    inputs: list[str] | None = None
    group: str = ""

    def argv_in(self, directory: Path) -> list[str]:
        return [a.replace("{dir}", str(directory)) for a in self.argv]

    def input_paths(self, directory: Path) -> list[Path]:
        names = self.inputs if self.inputs is not None else [
            name for name, spec in self.files.items()
            if spec is not DIRECTORY and not isinstance(spec, Link)]
        return [directory / name for name in names]


CASES: list[Case] = []
_GROUP = [""]


def case(id: str, argv: list[str], files: dict | None = None, expect=(), *, dos=False,
         code=2, usage=False, inputs=None) -> None:
    codes = (code,) if isinstance(code, int) else tuple(code)
    CASES.append(Case(f"{_GROUP[0]}-{id}", list(argv), dict(files or {}), list(expect), dos,
                      codes, usage, inputs, _GROUP[0]))


def group(name: str) -> None:
    _GROUP[0] = name


SIM = ["simulate", "m.yaml", "--trials", "2", "--steps", "5", "-o", "o.nc"]
RUN = ["run", "p.yaml", "-o", "o.nc"]


def sim_model(id, text, expect=("m.yaml",), dos=False, **kwargs):
    case(id, SIM, {"m.yaml": text}, expect, dos=dos, **kwargs)


def run_protocol(id, text, expect=("p.yaml",), dos=False, extra=(), files=None, **kwargs):
    case(id, [*RUN, *extra], {"p.yaml": text, **(files or {})}, expect, dos=dos, **kwargs)


# --- model files ----------------------------------------------------------------------
group("model")
sim_model("alias-bomb", alias_bomb() + model().replace(
    "description: a small leaky network for hostile-input tests", "description: *a9"),
    dos=True)
sim_model("alias-bomb-in-parameters", model(tail="parameters: {tau: {init: *a9}}\n",
                                           head=alias_bomb()), dos=True)
sim_model("mapping-bomb", mapping_bomb(40) + model(), dos=True)
sim_model("huge-power", model("dx/dt = (-x + x**99999999999 + I_rec + I_in + b) / tau : 1"),
          dos=True)
sim_model("binomial-power", model("dx/dt = (-x + (x+1)**100000 + I_rec + I_in) / tau : 1"),
          dos=True)
sim_model("nested-powers", model("dx/dt = (-x + (((x+1)**60)**60)**60 + I_rec + I_in) "
                                 "/ tau : 1"), dos=True)
sim_model("power-tower", model("dx/dt = (-x + x**(2**2**2**2**2) + I_rec + I_in) / tau : 1"),
          dos=True)
sim_model("product-degree", model("dx/dt = (-x + " + "*".join(["(x+1)"] * 1500)
                                  + " + I_rec + I_in) / tau : 1"), dos=True)
sim_model("huge-unit-power", model(extra="g : metre**9999999 (constant, shared)"), dos=True)
sim_model("unit-power-of-power", model(extra="g : volt**(10**10) (constant, shared)"), dos=True)
sim_model("equation-1MB", model("dx/dt = (-x + I_rec + I_in + " + "x*0+" * 220000
                                + "0) / tau : 1"), dos=True)
sim_model("equation-500kB", model("dx/dt = (-x + I_rec + I_in + " + "b+" * 170000
                                  + "0) / tau : 1"), dos=True)
sim_model("nested-parentheses", model("dx/dt = " + "(" * 10000 + "-x + I_rec + I_in"
                                      + ")" * 10000 + " / tau : 1"), dos=True)
sim_model("unary-chain", model("dx/dt = (" + "-" * 9000 + "x + I_rec + I_in) / tau : 1"),
          dos=True)
sim_model("huge-literal", model("dx/dt = (-x + I_rec + I_in + " + "9" * 9000 + " * b) / tau : 1"),
          dos=True)
sim_model("yaml-deep-nesting", model(tail="initial_extra: " + "[" * 50000 + "]" * 50000
                                     + "\n"), dos=True)
for id, value in [("n_units-1e12", "1000000000000"), ("n_units-float", "1.0e12"),
                  ("n_units-string", "many"), ("n_units-negative", "-3"),
                  ("n_units-bool", "true"), ("n_units-zero", "0"),
                  ("n_units-power-text", "10**12")]:
    sim_model(id, model(defaults=f"{{n_units: {value}, n_inputs: 2, n_outputs: 1, "
                                 "tau: 10 ms, dt: 1 ms}"), expect=("m.yaml", "n_units"),
              dos=True)
sim_model("n_inputs-1e12", model(defaults="{n_units: 4, n_inputs: 1000000000000, "
                                          "n_outputs: 1, tau: 10 ms, dt: 1 ms}"), dos=True)
sim_model("dt-negative", model(defaults="{n_units: 4, n_inputs: 2, n_outputs: 1, "
                                        "tau: 10 ms, dt: -1 ms}"), expect=("m.yaml", "dt"))
sim_model("dt-nan", model(defaults="{n_units: 4, n_inputs: 2, n_outputs: 1, "
                                   "tau: 10 ms, dt: nan ms}"), expect=("m.yaml", "dt"))
sim_model("tau-wrong-unit", model(defaults="{n_units: 4, n_inputs: 2, n_outputs: 1, "
                                           "tau: 3 volt, dt: 1 ms}"), expect=("m.yaml", "tau"))
sim_model("import-in-equation", model("dx/dt = (-x + I_rec + I_in + __import__('os').system("
                                      "'touch {dir}/pwned')) / tau : 1"))
sim_model("import-in-default", model(defaults="{n_units: 4, n_inputs: 2, n_outputs: 1, "
                                              "tau: \"__import__('os').system('touch "
                                              "{dir}/pwned') or 10 ms\", dt: 1 ms}"))
sim_model("lambda-in-equation", model("dx/dt = ((lambda: open('{dir}/pwned', 'w'))() - x) "
                                      "/ tau : 1"))
sim_model("dunder-attribute", model("dx/dt = (-x + I_rec.__class__.__mro__ + I_in) / tau : 1"))
sim_model("import-in-init", MODEL.replace("init: {kind: scaled_normal, gain: 0.9}",
                                          "init: \"__import__('os').system('touch "
                                          "{dir}/pwned')\""))
sim_model("not-utf8", b"name: tiny\xff\xfe\ndescription: \x80\x81\n" + MODEL.encode())
sim_model("empty", "")
sim_model("only-comment", "# nothing here\n")
sim_model("a-list", "- name: tiny\n- equations: x\n")
sim_model("binary", np.random.default_rng(5).bytes(3000))
sim_model("passwd-content", PASSWD, expect=("m.yaml",))
sim_model("duplicate-key", MODEL + "name: again\n", expect=("m.yaml", "name"))
sim_model("bad-yaml-syntax", MODEL.replace("readout: {source: x}", "readout: {source: x"))
case("directory", SIM, {"m.yaml": DIRECTORY}, ["m.yaml"])
case("missing-file", ["simulate", "nosuch.yaml", "-o", "o.nc"], {}, ["nosuch.yaml"])
case("shadow-as-model", ["simulate", "secret.yaml", "-o", "o.nc"], {"secret.yaml": SHADOW},
     ["secret.yaml"])

# --- protocol files -------------------------------------------------------------------
group("protocol")
run_protocol("alias-bomb", alias_bomb() + protocol(name="name: *a9"), dos=True)
run_protocol("alias-bomb-in-task", alias_bomb(prefix="t") + protocol(
    task="task: {name: delayed_cue, cue: *t9}"), dos=True)
run_protocol("mapping-bomb", mapping_bomb(40) + PROTOCOL, dos=True)
run_protocol("yaml-deep-nesting", PROTOCOL + "x: " + "{a: " * 30000 + "1" + "}" * 30000 + "\n",
             dos=True)
run_protocol("unknown-key", protocol(trainig="trainig: {epochs: 1}"), ("p.yaml", "trainig"))
run_protocol("unknown-nested-key", protocol(
    rule="rule: {name: bptt, optimizer: {name: adam, lrr: 0.1}}"), ("p.yaml", "lrr"))
run_protocol("epochs-text", protocol(training="training: {epochs: many, steps_per_epoch: 2}"),
             ("p.yaml", "epochs"))
run_protocol("epochs-1e21", protocol(training="training: {epochs: 1000000000000000000000, "
                                              "steps_per_epoch: 2, batch_size: 8}"),
             ("p.yaml", "epochs"), dos=True)
run_protocol("batch_size-1e12", protocol(training="training: {epochs: 1, steps_per_epoch: 2, "
                                                  "batch_size: 1000000000000}"),
             ("p.yaml", "batch_size"), dos=True)
run_protocol("members-1e9", protocol(training="training: {epochs: 1, steps_per_epoch: 2, "
                                              "batch_size: 8, members: 1000000000}"),
             ("p.yaml", "members"), dos=True)
run_protocol("record-trials-1e12", protocol(record="record: {trials: 1000000000000}"),
             ("p.yaml", "trials"), dos=True)
run_protocol("seed-2**70", protocol(seed="seed: 1180591620717411303424"), ("p.yaml", "seed"))
run_protocol("seed-negative", protocol(seed="seed: -1"), ("p.yaml", "seed"))
run_protocol("seed-float", protocol(seed="seed: 1.5"), ("p.yaml", "seed"))
run_protocol("set-seed-huge", PROTOCOL, ("seed", "--set"),
             extra=["--set", "seed=99999999999999999999999"])
run_protocol("task-delay-1e12-s", protocol(
    task="task: {name: delayed_cue, delay: 1e12 second}"), ("p.yaml", "delay"), dos=True)
run_protocol("task-cue-negative", protocol(task="task: {name: delayed_cue, cue: -5 ms}"),
             ("p.yaml", "cue"))
run_protocol("task-delay-nan", protocol(task="task: {name: delayed_cue, delay: nan ms}"),
             ("p.yaml", "delay"))
run_protocol("model-dt-1e-300", protocol(
    model="model: {file: leaky_rate, n_units: 8, dt: 1e-300 second}"), ("p.yaml", "dt"),
    dos=True)
run_protocol("lr-nan", protocol(rule="rule: {name: bptt, optimizer: {name: adam, lr: .nan}}"),
             ("p.yaml", "lr"))
run_protocol("lr-negative", protocol(rule="rule: {name: bptt, optimizer: {name: adam, "
                                          "lr: -1}}"), ("p.yaml", "lr"))
run_protocol("rule-import", protocol(rule="rule: {name: \"__import__('os').system('touch "
                                          "{dir}/pwned')\"}"), ("p.yaml", "rule"))
run_protocol("brian2-with-bptt", protocol(backend="backend: {name: brian2, target: numpy}"),
             ("p.yaml", "backend", "bptt"))
run_protocol("device-cuda", protocol(backend="backend: {name: torch, device: cuda}"),
             ("backend.device",))
run_protocol("empty", "")
run_protocol("not-utf8", b"name: \xff\xfe\n" + PROTOCOL.encode())
run_protocol("a-list", "- 1\n- 2\n")
run_protocol("binary", np.random.default_rng(6).bytes(2000))
run_protocol("duplicate-key", PROTOCOL + "seed: 1\n", ("p.yaml", "seed"))
run_protocol("passwd-content", PASSWD)
case("directory", RUN, {"p.yaml": DIRECTORY}, ["p.yaml"])
for id, value, files in [
        ("set-model-file-secret", "{dir}/secret.txt", {"secret.txt": SHADOW}),
        ("set-model-file-secret-yaml", "{dir}/secret.yaml", {"secret.yaml": SHADOW}),
        ("set-model-file-secret-mapping", "{dir}/secret2.yaml",
         {"secret2.yaml": f"root: $6${SECRET}:19000:0:99999:7:::\n"}),
        ("set-model-file-dev-zero", "/dev/zero", {}),
        ("set-model-file-dev-urandom", "/dev/urandom", {}),
        ("set-model-file-directory", "{dir}/adir", {"adir": DIRECTORY}),
        ("set-model-file-missing", "{dir}/nosuch.yaml", {}),
        ("set-model-file-protocol-itself", "{dir}/p.yaml", {})]:
    run_protocol(id, PROTOCOL, ("model.file", "--set", Path(value).name),
                 extra=["--set", f"model.file={value}"], files=files, dos=True)
run_protocol("set-training-scalar", PROTOCOL, ("training", "--set"),
             extra=["--set", "training=5"])
run_protocol("set-into-scalar", PROTOCOL, ("epochs", "--set"),
             extra=["--set", "training.epochs.deep=1"])
run_protocol("set-n_units-negative", PROTOCOL, ("n_units", "--set"),
             extra=["--set", "model.n_units=-1"])
run_protocol("set-n_units-1e12", PROTOCOL, ("n_units", "--set"),
             extra=["--set", "model.n_units=1e12"], dos=True)
run_protocol("set-without-equals", PROTOCOL, ("--set",), extra=["--set", "training.epochs"])
run_protocol("resume-and-overwrite", PROTOCOL, ("--overwrite", "--resume"),
             extra=["--resume", "--overwrite"])
case("sweep-alias-bomb", ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1", "-o",
                          "o.nc"], {"p.yaml": alias_bomb() + protocol(name="name: *a9")},
     ["p.yaml"], dos=True)
case("sweep-unknown-grid-key", ["sweep", "p.yaml", "--grid", "nonsense.key=1,2", "--workers",
                                "1", "-o", "o.nc"], {"p.yaml": PROTOCOL},
     ["nonsense", "--grid"], dos=True)
case("sweep-grid-without-values", ["sweep", "p.yaml", "--grid", "seed=", "-o", "o.nc"],
     {"p.yaml": PROTOCOL}, ["--grid"])
case("sweep-1000-workers", ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1000",
                            "-o", "o.nc"], {"p.yaml": PROTOCOL}, ["--workers"], dos=True)
case("sweep-1000-threads", ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1",
                            "--threads", "1000", "-o", "o.nc"], {"p.yaml": PROTOCOL},
     ["--threads"], dos=True)
case("sweep-unreachable-scheduler", ["sweep", "p.yaml", "--grid", "seed=0,1", "--scheduler",
                                     "tcp://127.0.0.1:9", "-o", "o.nc"],
     {"p.yaml": PROTOCOL}, ["scheduler", "127.0.0.1"], dos=True)

# --- inputs (.npy / .nc) -------------------------------------------------------------
group("inputs")


def sim_inputs(id, spec, name="in.npy", expect=None, dos=False, **kwargs):
    case(id, ["simulate", "m.yaml", "--inputs", name, "-o", "o.nc"],
         {"m.yaml": MODEL, name: spec}, list(expect or [name]), dos=dos, **kwargs)


F8 = {"descr": "<f8", "fortran_order": False}
sim_inputs("header-claims-1e18", npy_header({**F8, "shape": (10**6, 10**6, 10**6)},
                                            b"\0" * 64), dos=True)
sim_inputs("header-claims-2**124", npy_header({**F8, "shape": (2**62, 2**62)}, b"\0" * 64),
           dos=True)
sim_inputs("header-negative-shape", npy_header({**F8, "shape": (-1, 5, 2)}, b"\0" * 80))
sim_inputs("header-nested-shape", npy_header({**F8, "shape": ((1, 2), 5, 2)}, b"\0" * 80))
sim_inputs("header-code", npy_header("{'descr': __import__('os').system('touch pwned'), "
                                     "'fortran_order': False, 'shape': (2, 5, 2)}",
                                     b"\0" * 160))
sim_inputs("header-length-4GB", npy_header({**F8, "shape": (2, 5, 2)}, b"\0" * 160,
                                           version=(2, 0), length=0xFFFFFFF0), dos=True)
sim_inputs("header-version-9", npy_header({**F8, "shape": (2, 5, 2)}, b"\0" * 160,
                                          version=(9, 0)))
sim_inputs("object-dtype-payload", npy(npy_payload, pickle=True))
sim_inputs("nan", npy(nan_inputs()))
sim_inputs("inf", npy(nan_inputs(value=np.inf)))
sim_inputs("2d", npy(lambda _: np.zeros((5, 2))))
sim_inputs("5d", npy(lambda _: np.zeros((1, 1, 2, 5, 2))))
sim_inputs("wrong-n_inputs", npy(lambda _: np.zeros((2, 5, 3))))
sim_inputs("zero-trials", npy(lambda _: np.zeros((0, 5, 2))))
sim_inputs("zero-steps", npy(lambda _: np.zeros((2, 0, 2))))
sim_inputs("complex", npy(lambda _: np.zeros((2, 5, 2), dtype=complex)))
sim_inputs("strings", npy(lambda _: np.full((2, 5, 2), "a")))
sim_inputs("truncated-body", lambda p: (npy(lambda _: np.ones((2, 5, 2)))(p),
                                        truncate(0.7)(p)))
sim_inputs("text-as-npy", "1 2 3\n4 5 6\n")
sim_inputs("empty-npy", b"")
sim_inputs("directory", DIRECTORY)
case("inputs-missing", ["simulate", "m.yaml", "--inputs", "nosuch.npy", "-o", "o.nc"],
     {"m.yaml": MODEL}, ["nosuch.npy"])
sim_inputs("nc-without-inputs", rec(), name="in.nc")
sim_inputs("nc-wrong-n_inputs", Base("sim"), name="in.nc")
sim_inputs("nc-text", "hello\n", name="in.nc")
sim_inputs("nc-inputs-nan", Base("sim", poison_variable("inputs")), name="in.nc")

# --- outputs over inputs ---------------------------------------------------------------
group("overwrite")
PM = protocol(model="model: {file: m.yaml, n_units: 4}")
for id, out, extra in [("same-name", "m.yaml", {}), ("dot-slash", "./m.yaml", {}),
                       ("dotdot", "sub/../m.yaml", {"sub": DIRECTORY}),
                       ("symlink", "link.yaml", {"link.yaml": Link("m.yaml")}),
                       ("hardlink", "hard.yaml", {"hard.yaml": Link("m.yaml", hard=True)}),
                       ("absolute", "{dir}/m.yaml", {})]:
    case(f"simulate-{id}", ["simulate", "m.yaml", "--trials", "2", "--steps", "5", "-o", out],
         {"m.yaml": MODEL, **extra}, ["-o", "m.yaml", Path(out).name], inputs=["m.yaml"])
case("simulate-inputs", ["simulate", "m.yaml", "--inputs", "in.npy", "-o", "in.npy"],
     {"m.yaml": MODEL, "in.npy": npy(lambda _: np.zeros((2, 5, 2)))}, ["-o", "in.npy"])
case("simulate-result", ["simulate", "s.nc", "-o", "s.nc"], {"s.nc": Base("sim")},
     ["-o", "s.nc"])
case("run-model-file", ["run", "p.yaml", "-o", "m.yaml"], {"p.yaml": PM, "m.yaml": MODEL},
     ["-o", "m.yaml"])
case("run-protocol", ["run", "p.yaml", "-o", "p.yaml"], {"p.yaml": PM, "m.yaml": MODEL},
     ["-o", "p.yaml"])
case("run-protocol-dotdot", ["run", "p.yaml", "-o", "sub/../p.yaml"],
     {"p.yaml": PM, "m.yaml": MODEL, "sub": DIRECTORY}, ["-o", "p.yaml"])
case("run-model-via-symlink", ["run", "p.yaml", "-o", "m.yaml"],
     {"p.yaml": protocol(model="model: {file: link.yaml, n_units: 4}"), "m.yaml": MODEL,
      "link.yaml": Link("m.yaml")}, ["-o", "m.yaml", "link.yaml"])
case("run-output-symlink-to-model", ["run", "p.yaml", "-o", "alias.nc"],
     {"p.yaml": PM, "m.yaml": MODEL, "alias.nc": Link("m.yaml")}, ["-o", "alias.nc", "m.yaml"])
case("run-result", ["run", "r.nc", "-o", "r.nc"], {"r.nc": Base("train")}, ["-o", "r.nc"])
case("run-checkpoint-is-protocol", ["run", "p.yaml", "-o", "o.nc"],
     {"p.yaml": PM, "m.yaml": MODEL, "o.nc.checkpoint.pt": Link("p.yaml")},
     ["checkpoint", "p.yaml", "-o"], inputs=["p.yaml", "m.yaml"])
case("run-checkpoint-is-model-hardlink", ["run", "p.yaml", "-o", "o.nc"],
     {"p.yaml": PM, "m.yaml": MODEL, "o.nc.checkpoint.pt": Link("m.yaml", hard=True)},
     ["checkpoint", "m.yaml", "-o"], inputs=["p.yaml", "m.yaml"])
case("analyze", ["analyze", "r.nc", "-o", "r.nc"], {"r.nc": Base("train")}, ["-o", "r.nc"])
case("analyze-dot-slash", ["analyze", "r.nc", "--geometry", "-o", "./r.nc"],
     {"r.nc": Base("train")}, ["-o", "r.nc"])
case("compare-first", ["compare", "a.nc", "b.nc", "-o", "a.nc"],
     {"a.nc": Base("sim"), "b.nc": Base("recording")}, ["-o", "a.nc"])
case("compare-second", ["compare", "a.nc", "b.nc", "-o", "b.nc"],
     {"a.nc": Base("sim"), "b.nc": Base("recording")}, ["-o", "b.nc"])
case("compare-second-symlink", ["compare", "a.nc", "b.nc", "-o", "c.nc"],
     {"a.nc": Base("sim"), "b.nc": Base("recording"), "c.nc": Link("b.nc")},
     ["-o", "c.nc", "b.nc"], inputs=["a.nc", "b.nc"])
case("plot", ["plot", "r.nc", "-o", "r.nc"], {"r.nc": Base("train")}, ["-o", "r.nc"])
case("sweep-protocol", ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1", "-o",
                        "p.yaml"], {"p.yaml": PM, "m.yaml": MODEL}, ["-o", "p.yaml"])
case("sweep-model", ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1", "-o",
                     "m.yaml"], {"p.yaml": PM, "m.yaml": MODEL}, ["-o", "m.yaml"])
case("sweep-protocol-in-shards", ["sweep", "o.nc.shards/p.yaml", "--grid", "seed=0,1",
                                  "--workers", "1", "-o", "o.nc"],
     {"o.nc.shards/p.yaml": PROTOCOL}, ["shard", "o.nc.shards"])
case("sweep-model-in-shards", ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1",
                               "-o", "o.nc"],
     {"p.yaml": protocol(model="model: {file: o.nc.shards/m.yaml, n_units: 4}"),
      "o.nc.shards/m.yaml": MODEL}, ["shard", "o.nc.shards"])

# an earlier output at the output path is kept when the command fails on bad input
case("existing-output-kept-simulate", ["simulate", "m.yaml", "--inputs", "in.npy", "-o",
                                       "prev.nc"],
     {"m.yaml": MODEL, "in.npy": npy(nan_inputs()), "prev.nc": Base("sim")}, ["in.npy"])
case("existing-output-kept-run", ["run", "p.yaml", "-o", "prev.nc", "--resume"],
     {"p.yaml": PROTOCOL, "prev.nc": Base("train"),
      "prev.nc.checkpoint.pt": Base("checkpoint", truncate(0.5))}, ["prev.nc.checkpoint.pt"])
case("existing-output-kept-analyze", ["analyze", "rec.nc", "--max-lag", "100000", "-o",
                                      "prev.nc"],
     {"rec.nc": rec(), "prev.nc": Base("sim")}, ["rec.nc", "--max-lag"])

# --- result files (.nc) ---------------------------------------------------------------
group("result")
COMMANDS = {
    "simulate": ["simulate", "r.nc", "-o", "o.nc"],
    "run": ["run", "r.nc", "-o", "o.nc"],
    "info": ["info", "r.nc"],
    "plot": ["plot", "r.nc", "-o", "f.png"],
    "analyze": ["analyze", "r.nc", "--geometry", "-o", "a.nc"],
    "compare": ["compare", "r.nc", "b.nc"],
}


def on_result(id, spec, commands, expect=("r.nc",), base_b="recording", **kwargs):
    for command in commands:
        files = {"r.nc": spec}
        if command == "compare":
            files["b.nc"] = Base(base_b)
        case(f"{id}-{command}", COMMANDS[command], files, expect, **kwargs)


on_result("truncated", Base("train", truncate(0.5)), COMMANDS)
on_result("truncated-header", Base("train", truncate(0.02)), ["info", "simulate"])
on_result("flipped-bytes", Base("train", flip_bytes(0.3, 512)), ["info", "simulate", "run"])
on_result("random-bytes", random_bytes(), ["info", "simulate", "analyze"])
on_result("text", "just some text\n", ["info", "plot"])
on_result("secret-text", SHADOW, ["info", "simulate"])
on_result("empty", b"", ["info", "run"])
on_result("hdf5-not-netcdf", hdf5_not_netcdf, ["simulate", "run", "plot", "analyze"])
on_result("hdf5-not-netcdf", hdf5_not_netcdf, ["info"], code=(0, 2))  # readable by netCDF4
on_result("other-netcdf", other_netcdf, ["simulate", "run", "plot", "analyze"])
case("directory-info", ["info", "r.nc"], {"r.nc": DIRECTORY}, ["r.nc"])
case("directory-plot", ["plot", "r.nc", "-o", "f.png"], {"r.nc": DIRECTORY}, ["r.nc"])
BAD_MODEL_TEXT = MODEL.replace("(-x + I_rec + I_in + b)", "(-x + gain * I_rec + I_in + b)")
on_result("model-bad-equation", Base("train", set_attr(model=BAD_MODEL_TEXT)),
          ["simulate", "run", "analyze"], ("r.nc", "model"))
on_result("model-alias-bomb", Base("train", set_attr(model=alias_bomb() + MODEL)),
          ["simulate", "run"], ("r.nc", "model"), dos=True)
on_result("model-huge-power", Base("sim", set_attr(model=model(
    "dx/dt = (-x + (x+1)**100000 + I_rec + I_in) / tau : 1"))), ["simulate"],
    ("r.nc", "model"), dos=True)
on_result("model-not-text", Base("train", set_attr(model=np.int32(5))), ["simulate", "run"],
          ("r.nc", "model"))
on_result("model-missing", Base("sim", set_attr(model=None)), ["simulate"], ("r.nc", "model"))
for id, value in [("not-json", "{not json"), ("list", "[1, 2]"),
                  ("source", '{"source": 1}'), ("file", '{"file": 1}'),
                  ("text", '{"text": 1}'), ("where", '{"where": 1}'),
                  ("overrides", '{"overrides": {"a": 1}}'),
                  ("n_units-1e12", '{"n_units": 1000000000000}'),
                  ("dunder", '{"__class__": 1}')]:
    on_result(f"overrides-{id}", Base("sim", set_attr(model_overrides=value)), ["simulate"],
              ("r.nc", "model_overrides"))
on_result("overrides-not-json", Base("train", set_attr(model_overrides="{not json")),
          ["analyze"], ("r.nc", "model_overrides"))
on_result("seed-text", Base("sim", set_attr(seed="abc")), ["simulate"], ("r.nc", "seed"))
on_result("seed-2**70-text", Base("sim", set_attr(seed="1180591620717411303424")),
          ["simulate"], ("r.nc", "seed"))
on_result("seed-negative", Base("sim", set_attr(seed=np.int64(-5))), ["simulate"],
          ("r.nc", "seed"))
on_result("seed-float", Base("sim", set_attr(seed=1.5)), ["simulate"], ("r.nc", "seed"))
on_result("noise-text", Base("sim", set_attr(noise="yes")), ["simulate", "info"],
          ("r.nc", "noise"))
on_result("W_rec-wrong-shape", Base("sim", replace_variable("W_rec", ("u3", "p3"),
                                                            np.zeros((3, 3)))),
          ["simulate"], ("r.nc", "W_rec"))
on_result("W_rec-nan", Base("sim", poison_variable("W_rec")), ["simulate"], ("r.nc", "W_rec"))
on_result("W_rec-missing", Base("sim", drop_variable("W_rec")), ["simulate"],
          ("r.nc", "W_rec"))
on_result("initial-wrong-shape", Base("sim", replace_variable("initial_x", ("trial", "u9"),
                                                              np.zeros((3, 5)))),
          ["simulate"], ("r.nc", "initial_x"))
on_result("inputs-wrong-dims", Base("sim", replace_variable("inputs", ("d1", "d2"),
                                                           np.zeros((3, 4)))),
          ["simulate"], ("r.nc", "inputs"))
on_result("protocol-missing", Base("train", set_attr(protocol=None)), ["run"],
          ("r.nc", "protocol"))
on_result("protocol-garbage", Base("train", set_attr(protocol="{{{ : [")), ["run"],
          ("r.nc", "protocol"))
on_result("protocol-alias-bomb", Base("train", set_attr(protocol=alias_bomb() + PROTOCOL)),
          ["run"], ("r.nc", "protocol"), dos=True)
on_result("protocol-epochs-1e21", Base("train", set_attr(protocol=protocol(
    training="training: {epochs: 1000000000000000000000}"))), ["run"], ("r.nc", "protocol"),
    dos=True)
on_result("backend_options-not-json", Base("train", set_attr(backend_options="{nope")),
          ["info"], ("r.nc", "backend_options"))
on_result("dt-text", Base("sim", set_attr(dt="abc")), ["info", "simulate"], ("r.nc", "dt"),
          code=(0, 2))
on_result("library_versions-garbage", Base("sim", set_attr(library_versions="{garbage")),
          ["info"], code=(0, 2))
on_result("resumed_from_epoch-text", Base("train", set_attr(resumed_from_epoch="later")),
          ["info"], ("r.nc", "resumed_from_epoch"))
on_result("kind-analysis", Base("train", set_attr(kind="analysis")), ["plot"])
on_result("loss-missing", Base("train", drop_variable("loss")), ["plot"], ("r.nc", "loss"))

# --- recordings and analysis ----------------------------------------------------------
group("analysis")
COMPARE = ["compare", "r.nc", "rec.nc", "--condition", "condition_cue", "--recording-condition",
           "cue"]
for id, spec in [("nan", rec(poison=set_nan)), ("all-nan", rec(poison=set_all_nan)),
                 ("inf", rec(poison=set_inf)), ("constant", rec(poison=set_constant)),
                 ("uneven-time", rec(times=np.array([0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                     13, 14, 15, 16, 17, 18, 19, 20]) * 1e-3)),
                 ("decreasing-time", rec(times=np.arange(20)[::-1] * 1e-3)),
                 ("one-step", rec(steps=1)), ("one-trial", rec(trials=1))]:
    # a recording of 6 x 20 x 5 samples: any outcome must come quickly
    case(f"analyze-{id}", ["analyze", "rec.nc", "--timescales", "--geometry", "--max-lag", "5",
                           "-o", "a.nc"], {"rec.nc": spec}, ["rec.nc"], code=(0, 2), dos=True)
    case(f"compare-{id}", [*COMPARE, "--shuffles", "5"], {"r.nc": Base("train"), "rec.nc": spec},
         ["rec.nc"], code=(0, 2))
case("compare-model-nan", [*COMPARE, "--shuffles", "5"],
     {"r.nc": Base("train", poison_variable("r")), "rec.nc": rec()}, ["r.nc"], code=(0, 2))
case("max-lag-recording", ["analyze", "rec.nc", "--timescales", "--max-lag", "100000", "-o",
                           "a.nc"], {"rec.nc": rec()}, ["--max-lag", "max_lag", "rec.nc"])
case("max-lag-result", ["analyze", "s.nc", "--timescales", "--steps", "200", "--max-lag",
                        "100000", "-o", "a.nc"], {"s.nc": Base("sim")},
     ["--max-lag", "max_lag", "s.nc"], dos=True)
case("steps-1e12", ["analyze", "s.nc", "--timescales", "--steps", "1000000000000", "-o",
                    "a.nc"], {"s.nc": Base("sim")}, ["--steps", "s.nc"], dos=True)
case("trials-1e9", ["analyze", "s.nc", "--timescales", "--steps", "100", "--trials",
                    "1000000000", "-o", "a.nc"], {"s.nc": Base("sim")}, ["--trials", "s.nc"],
     dos=True)
case("compare-shuffles-1e9", [*COMPARE, "--shuffles", "1000000000"],
     {"r.nc": Base("train"), "rec.nc": rec()}, ["--shuffles", "r.nc", "rec.nc"], dos=True)
case("compare-folds-1e9", [*COMPARE, "--folds", "1000000000"],
     {"r.nc": Base("train"), "rec.nc": rec()}, ["--folds", "r.nc", "rec.nc"], dos=True)
case("compare-condition-missing", ["compare", "r.nc", "rec.nc", "--condition", "nope"],
     {"r.nc": Base("train"), "rec.nc": rec()}, ["nope", "--condition"])
case("sweep-without-select", ["analyze", "sw.nc", "--geometry", "-o", "a.nc"],
     {"sw.nc": Base("sweep")}, ["sw.nc", "--select"])
case("sweep-select-missing-value", ["analyze", "sw.nc", "--geometry", "--select", "seed=7",
                                    "-o", "a.nc"], {"sw.nc": Base("sweep")},
     ["sw.nc", "--select"])
case("select-missing-dim", ["analyze", "r.nc", "--geometry", "--select", "nope=1", "-o",
                            "a.nc"], {"r.nc": Base("train")}, ["r.nc", "--select"])
case("compare-sweep-without-select", ["compare", "sw.nc", "rec.nc", "--shuffles", "5"],
     {"sw.nc": Base("sweep"), "rec.nc": rec()}, ["sw.nc", "--select"])
case("variable-missing", ["analyze", "rec.nc", "--geometry", "--variable", "nope", "-o",
                          "a.nc"], {"rec.nc": rec()}, ["rec.nc", "--variable", "nope"])

# --- checkpoints ----------------------------------------------------------------------
group("checkpoint")
RESUME = ["run", "p.yaml", "-o", "out.nc", "--resume"]
CKPT = "out.nc.checkpoint.pt"
for id, spec in [("truncated", Base("checkpoint", truncate(0.5))),
                 ("truncated-tiny", Base("checkpoint", truncate(0.01))),
                 ("flipped-bytes", Base("checkpoint", flip_bytes(0.5, 256))),  # hits the RNG state
                 ("random-bytes", random_bytes(5000)),
                 ("empty", b""),
                 ("text", "not a checkpoint\n"),
                 ("wrong-param-shape", Base("checkpoint", edit_checkpoint(_wrong_param_shape))),
                 ("missing-key", Base("checkpoint", edit_checkpoint(_missing_key))),
                 ("bad-rng-state", Base("checkpoint", edit_checkpoint(_bad_rng))),
                 ("rng-not-json", Base("checkpoint", edit_checkpoint(_rng_not_json))),
                 ("bad-torch-generator", Base("checkpoint",
                                              edit_checkpoint(_bad_torch_generator))),
                 ("next-epoch-1e30", Base("checkpoint", edit_checkpoint(_huge_epoch))),
                 ("next-epoch-text", Base("checkpoint", edit_checkpoint(_epoch_text))),
                 ("bad-history", Base("checkpoint", edit_checkpoint(_bad_history))),
                 ("not-a-dict", Base("checkpoint", edit_checkpoint(_not_a_dict))),
                 ("other-format", Base("checkpoint", edit_checkpoint(_other_format))),
                 ("pickle-payload", pickled_payload),
                 ("torch-payload", torch_payload),
                 ("directory", DIRECTORY)]:
    # flipped bytes may land where a finished run no longer looks (exit 0 is then right)
    case(id, RESUME, {"p.yaml": PROTOCOL, CKPT: spec}, [CKPT],
         inputs=["p.yaml"] + ([] if spec is DIRECTORY else [CKPT]),
         code=(0, 2) if id == "flipped-bytes" else 2)
case("unfinished-without-resume", ["run", "p.yaml", "-o", "out.nc"],
     {"p.yaml": PROTOCOL, CKPT: Base("checkpoint", edit_checkpoint(_unfinished))},
     [CKPT, "--resume"])
case("other-protocol", RESUME,
     {"p.yaml": PROTOCOL.replace("lr: 0.003", "lr: 0.004"),
      CKPT: Base("checkpoint", edit_checkpoint(_unfinished))}, [CKPT])

# --- command-line flags ---------------------------------------------------------------
group("flags")
SIM_M = ["simulate", "m.yaml", "-o", "o.nc"]
M = {"m.yaml": MODEL}
case("seed-2**70-text", [*SIM_M, "--seed", "2**70"], M, ["--seed"], usage=True)
case("seed-2**70", [*SIM_M, "--seed", str(2**70)], M, ["--seed"], usage=True)
case("seed-negative", [*SIM_M, "--seed", "-1"], M, ["--seed"], usage=True)
case("trials-zero", [*SIM_M, "--trials", "0"], M, ["--trials"], usage=True)
case("steps-1e12", [*SIM_M, "--steps", "1000000000000"], M, ["--steps", "--trials"],
     usage=True, dos=True)
case("trials-1e12", [*SIM_M, "--trials", "1000000000000", "--steps", "5"], M,
     ["--steps", "--trials"], usage=True, dos=True)
case("input-std-nan", [*SIM_M, "--input-std", "nan", "--trials", "2", "--steps", "5"], M,
     ["--input-std"], usage=True)
case("input-std-inf", [*SIM_M, "--input-std", "inf", "--trials", "2", "--steps", "5"], M,
     ["--input-std"], usage=True)
for device in ["cuda", "cuda:99", "nonsense", "meta", "mps"]:
    case(f"device-{device}", [*SIM_M, "--device", device, "--trials", "2", "--steps", "5"], M,
         ["--device"])
case("set-device-cuda", [*RUN, "--set", "backend.device=cuda"], {"p.yaml": PROTOCOL},
     ["backend.device"])
case("brian2-with-device", [*SIM_M, "--backend", "brian2", "--device", "cpu"], M,
     ["--device"])
case("set-without-equals", [*SIM_M, "--set", "n_units"], M, ["--set"])
case("set-empty-key", [*SIM_M, "--set", "=5"], M, ["--set"])
case("set-n_units-1e12", [*SIM_M, "--set", "n_units=1e12"], M, ["n_units", "--set"], dos=True)
case("set-n_units-text", [*SIM_M, "--set", "n_units=abc"], M, ["n_units", "--set"])
case("set-unknown", [*SIM_M, "--set", "nonsense=1"], M, ["nonsense", "--set"])
case("set-n_units-on-result", ["simulate", "s.nc", "--set", "n_units=3", "-o", "o.nc"],
     {"s.nc": Base("sim")}, ["--set", "n_units"])
case("record-unknown", [*SIM_M, "--record", "nosuch", "--trials", "2", "--steps", "5"], M,
     ["--record", "nosuch"])
case("output-is-directory", [*SIM_M, "--trials", "2", "--steps", "5", "-o", "odir"],
     {**M, "odir": DIRECTORY}, ["odir"])
case("output-unwritable", ["simulate", "m.yaml", "--trials", "2", "--steps", "5", "-o",
                           "/proc/nope/o.nc"], M, ["/proc/nope", "o.nc"])
case("plot-other-netcdf", ["plot", "x.nc", "-o", "f.png"], {"x.nc": other_netcdf}, ["x.nc"])
case("plot-text", ["plot", "x.nc", "-o", "f.png"], {"x.nc": "hello\n"}, ["x.nc"])
case("plot-trial-out-of-range", ["plot", "s.nc", "--trial", "99", "-o", "f.png"],
     {"s.nc": Base("sim")}, ["s.nc", "--trial"])
case("plot-variable-unknown", ["plot", "s.nc", "--variable", "nope", "-o", "f.png"],
     {"s.nc": Base("sim")}, ["s.nc", "--variable", "nope"])
case("info-directory", ["info", "adir"], {"adir": DIRECTORY}, ["adir"])
case("info-missing", ["info", "nosuch.nc"], {}, ["nosuch.nc"])
case("info-dev-zero", ["info", "/dev/zero"], {}, ["/dev/zero"], dos=True)
case("list-nonsense", ["list", "nonsense"], {}, ["nonsense"])
case("convert-not-nwb", ["convert", "s.nc", "-o", "o.nc"], {"s.nc": Base("sim")}, ["s.nc"])
case("analyze-nwb-text", ["analyze", "x.nwb", "-o", "a.nc"], {"x.nwb": "not hdf5\n"},
     ["x.nwb"])


# --- round 2: special files, names, odd values (issue 14, second round) ---------------

def fifo(path: Path) -> None:
    """A named pipe: a reader that opens it blocks until a writer comes (list the case's
    ``inputs`` without it: hashing it would block too)."""
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    import socket
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def char_device(major: int, minor: int):
    """A character device node (1, 3 is what /dev/null is); needs root (CAP_MKNOD), else
    the case is skipped."""
    def write(path: Path) -> None:
        import stat
        import unittest
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        except PermissionError:
            raise unittest.SkipTest("making a device node needs root") from None
    return write


def nwb(trials=((1.0, 1.5),) * 4, spikes=((1.1, 1.2, 2.1, 3.3),), columns=None,
        series=None, timestamps=None):
    """An NWB file (pynwb): trials ``(start, stop)``, extra trial ``columns`` ({name:
    values}), units with these spike times, and optionally a TimeSeries ``lfp`` holding
    ``series`` sampled at 1 kHz (or at ``timestamps``)."""
    def write(path: Path) -> Path:
        from datetime import datetime, timezone
        import pynwb
        nwbfile = pynwb.NWBFile(session_description="hostile", identifier="hostile",
                                session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
        for times in spikes:
            nwbfile.add_unit(spike_times=np.asarray(times, dtype=float))
        for name in columns or {}:
            nwbfile.add_trial_column(name, name)
        for k, (start, stop) in enumerate(trials):
            nwbfile.add_trial(start_time=start, stop_time=stop,
                              **{name: values[k] for name, values in (columns or {}).items()})
        if series is not None:
            timing = {"timestamps": timestamps} if timestamps is not None else \
                {"rate": 1000.0, "starting_time": 0.0}
            nwbfile.add_acquisition(pynwb.TimeSeries(name="lfp", data=series, unit="V",
                                                     **timing))
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
        return path
    return write


def sparse_netcdf(gib: float, name: str = "inputs"):
    """A few-KB netCDF file whose chunked, never-written variable ``name`` (trial, time,
    input) reads as ``gib`` GiB of fill values: a decompression bomb."""
    def write(path: Path) -> None:
        import netCDF4
        trials = max(1, int(gib * 2**30 / (8 * 10000 * 2)))
        with netCDF4.Dataset(path, "w") as handle:
            for dim, size in (("trial", trials), ("time", 10000), ("input", 2)):
                handle.createDimension(dim, size)
            handle.createVariable(name, "f8", ("trial", "time", "input"), zlib=True,
                                  chunksizes=(1, 10000, 2))
    return write


group("special")
SIM2 = ["simulate", "m.yaml", "--trials", "2", "--steps", "5", "-o", "o.nc"]
# special files as inputs must be refused without reading them (passing)
case("model-fifo", SIM2, {"m.yaml": fifo}, ["m.yaml"], dos=True, inputs=[])
case("protocol-socket", ["run", "p.yaml", "-o", "o.nc"], {"p.yaml": unix_socket}, ["p.yaml"],
     dos=True, inputs=[])
case("inputs-fifo", ["simulate", "m.yaml", "--inputs", "in.npy", "-o", "o.nc"],
     {"m.yaml": MODEL, "in.npy": fifo}, ["in.npy"], dos=True, inputs=["m.yaml"])
case("result-fifo", ["info", "r.nc"], {"r.nc": fifo}, ["r.nc"], dos=True, inputs=[])
case("checkpoint-fifo", ["run", "p.yaml", "-o", "out.nc", "--resume"],
     {"p.yaml": PROTOCOL, "out.nc.checkpoint.pt": fifo}, ["out.nc.checkpoint.pt"], dos=True,
     inputs=["p.yaml"])
case("model-symlink-loop", SIM2, {"m.yaml": Link("m2.yaml"), "m2.yaml": Link("m.yaml")},
     ["m.yaml"], dos=True)
case("protocol-symlink-loop", ["run", "p.yaml", "-o", "o.nc"],
     {"p.yaml": Link("p2.yaml"), "p2.yaml": Link("p.yaml")}, ["p.yaml"], dos=True)
case("output-under-a-file", [*SIM2[:-1], "file.txt/o.nc"], {"m.yaml": MODEL, "file.txt": "x\n"},
     ["file.txt"])
# a checkpoint path that is a symlink loop: --resume says 'no checkpoint' and starts over
case("checkpoint-symlink-loop", ["run", "p.yaml", "-o", "out.nc", "--resume"],
     {"p.yaml": PROTOCOL, "out.nc.checkpoint.pt": Link("c2"), "c2": Link("out.nc.checkpoint.pt")},
     ["out.nc.checkpoint.pt"], inputs=["p.yaml"])
# -o naming a device node (as root, -o /dev/null would replace /dev/null with a file): the
# node must survive (refused, or written through)
case("output-char-device", [*SIM2[:-1], "null.nc"], {"m.yaml": MODEL, "null.nc": char_device(1, 3)},
     ["null.nc", "-o"], code=(0, 2))
# a sparse netCDF variable: a 6 KB file that `info` reads as 8 GiB (here: ~13 s, 8 GiB)
# info reads no values (it answers at once); what reads them refuses the claim unread
case("sparse-netcdf-inputs", ["simulate", "m.yaml", "--inputs", "r.nc", "-o", "o.nc"],
     {"m.yaml": MODEL, "r.nc": sparse_netcdf(8)}, ["r.nc"], dos=True)
case("sparse-netcdf-analyze", ["analyze", "r.nc", "-o", "a.nc"],
     {"r.nc": sparse_netcdf(8, "r")}, ["r.nc"], dos=True)

group("paths")
LONG_NAME = "n" * 300  # longer than NAME_MAX (255)
for id, argv, files in [
        ("model-name-too-long", ["simulate", f"{LONG_NAME}.yaml", "-o", "o.nc"], {}),
        ("model-path-too-long", ["simulate", "/".join(["d" * 200] * 30) + "/m.yaml", "-o", "o.nc"],
         {}),
        ("output-name-too-long", [*SIM2[:-1], f"{LONG_NAME}.nc"], {"m.yaml": MODEL}),
        ("output-nul", [*SIM2[:-1], "a\0b.nc"], {"m.yaml": MODEL}),
        ("run-output-nul", ["run", "p.yaml", "-o", "a\0b.nc"], {"p.yaml": PROTOCOL}),
        ("plot-output-nul", ["plot", "s.nc", "-o", "a\0b.png"], {"s.nc": Base("sim")}),
        ("protocol-nul", ["run", "a\0b.yaml", "-o", "o.nc"], {}),
        ("info-nul", ["info", "a\0b.nc"], {}),
        ("inputs-nul", ["simulate", "m.yaml", "--inputs", "a\0b.npy", "-o", "o.nc"],
         {"m.yaml": MODEL})]:
    case(id, argv, files, ["a", "n", "d", "-o"])
# a newline in a file name or key must not split the error line
case("info-newline-in-name", ["info", "a\nb.nc"], {"a\nb.nc": "hello\n"}, ["b.nc"])
case("output-newline-in-dir", [*SIM2[:-1], "f\nx/o.nc"], {"m.yaml": MODEL, "f\nx": "a file\n"},
     ["o.nc"])
case("condition-newline", ["compare", "r.nc", "rec.nc", "--condition", "a\nb"],
     {"r.nc": Base("train"), "rec.nc": Base("recording")}, ["--condition"])
# a model or protocol path with a newline is read as YAML text, and the error names no file
case("model-newline-in-name", SIM2[:1] + ["a\nb.yaml"] + SIM2[2:],
     {"a\nb.yaml": model("dx/dt = (-x + gain) / tau : 1")}, ["b.yaml"])
case("protocol-newline-in-name", ["run", "a\nb.yaml", "-o", "o.nc"],
     {"a\nb.yaml": protocol(seed="seed: -1")}, ["b.yaml"])
# names with format characters and unicode are just names (passing)
case("model-format-chars-in-name", SIM2[:1] + ["{0}%s%n{}.yaml"] + SIM2[2:],
     {"{0}%s%n{}.yaml": model("dx/dt = (-x + gain) / tau : 1")}, ["{0}%s%n{}.yaml"])

group("values")
BIG = "9" * 5000  # more digits than int() converts (sys.get_int_max_str_digits)
sim_model("n_units-5000-digits", model(defaults=f"{{n_units: {BIG}, n_inputs: 2, "
                                                "n_outputs: 1, tau: 10 ms, dt: 1 ms}"),
          expect=("m.yaml", "n_units"))
run_protocol("seed-5000-digits", protocol(seed=f"seed: {BIG}"), ("p.yaml", "seed"))
run_protocol("epochs-5000-digits", protocol(training=f"training: {{epochs: {BIG}}}"),
             ("p.yaml", "epochs"))
run_protocol("set-seed-5000-digits", PROTOCOL, ("seed", "--set"), extra=["--set", f"seed={BIG}"])
case("set-tau-100000-digits", [*SIM2, "--set", "tau=" + "9" * 100000], {"m.yaml": MODEL},
     ["tau", "--set"])
case("grid-seed-5000-digits", ["sweep", "p.yaml", "--grid", f"seed=0,{BIG}", "--workers", "1",
                               "-o", "o.nc"], {"p.yaml": PROTOCOL}, ["seed", "--grid"], dos=True)
run_protocol("set-index-superscript-two", protocol(
    regularizers="regularizers: [{name: weight_l2, weight: 0.001}]"), ("regularizers", "--set"),
    extra=["--set", "regularizers.\u00b2.weight=1"])
sim_model("division-by-zero", model("dx/dt = (-x + 1/0 + I_rec + I_in) / tau : 1"),
          expect=("m.yaml", "equations"))
sim_model("log-of-negative", model("dx/dt = (-x + log(-1) + I_rec + I_in) / tau : 1"),
          expect=("m.yaml", "equations"))
sim_model("name-longer-than-netcdf-allows", model(extra=f"{'v' * 300} : 1").replace(
    "I_in + b)", f"I_in + b + 0*{'v' * 300})"), expect=("m.yaml", "vvv"))
sim_model("coupling-name-longer-than-netcdf-allows", MODEL.replace("W_rec:", "W" * 300 + ":"),
          expect=("m.yaml", "WWW"))
# passing: odd but handled
case("set-recursive-alias", [*SIM2, "--set", "tau=&a [*a]"], {"m.yaml": MODEL},
     ["--set", "override tau"])
sim_model("subexpression-cycle", model(extra="a = c : 1\n  c = a : 1"),
          expect=("m.yaml", "equations"))
sim_model("parameter-named-pi", model(extra="pi : 1"), expect=("m.yaml", "pi"))
on_result("model-10MB", Base("train", set_attr(model="#" * 10_000_000)), ["run"],
          ("r.nc", "model"))

group("nwb")
CONVERT = ["convert", "r.nwb", "-o", "o.nc"]
for id, spec, extra in [
        ("start-nan", nwb(trials=[(1.0, 1.5), (float("nan"), 2.5)]), []),
        ("stop-inf", nwb(trials=[(1.0, float("inf"))] * 2), []),
        ("align-column-nan", nwb(columns={"cue": [1.1, np.nan, 1.1, 1.1]}), ["--align", "cue"]),
        ("series-empty", nwb(series=np.zeros(0)), ["--nwb-source", "lfp"]),
        ("series-text", nwb(series=np.array(["a"] * 10)), ["--nwb-source", "lfp"]),
        # bins that could never fit in memory: refused before allocating
        ("bin-1e-300", nwb(), ["--bin", "1e-300 second"]),
        ("bin-1e-12", nwb(), ["--bin", "1e-12 second"]),
        ("window-2e9-s", nwb(), ["--window=-1e9 second,1e9 second"])]:
    case(id, [*CONVERT, *extra], {"r.nwb": spec}, ["r.nwb"], dos=True)
case("analyze-start-nan", ["analyze", "r.nwb", "--geometry", "-o", "a.nc"],
     {"r.nwb": nwb(trials=[(1.0, 1.5), (float("nan"), 2.5)])}, ["r.nwb"])
case("truncated", CONVERT, {"r.nwb": lambda p: (nwb()(p), truncate(0.6)(p))}, ["r.nwb"])
case("hdf5-not-nwb", CONVERT, {"r.nwb": hdf5_not_netcdf}, ["r.nwb"])

group("scheduler")
for id, address in [("no-port", "not an address"), ("unknown-scheme", "foo://host:1"),
                    ("ucx", "ucx://127.0.0.1:1"), ("inproc", "inproc://x"),
                    ("bad-ipv6", "tcp://[::1:1"), ("tls-without-context", "tls://127.0.0.1:9")]:
    case(id, ["sweep", "p.yaml", "--grid", "seed=0,1", "--scheduler", address, "-o", "o.nc"],
         {"p.yaml": PROTOCOL}, ["--scheduler", "scheduler"], dos=True)


# ----------------------------------------------------------------------------- writing

def sha256(path: Path) -> str | None:
    """The digest of a file (None for a directory or a missing file)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except (IsADirectoryError, FileNotFoundError):
        return None


def write_case(case: Case, directory: Path, base: dict[str, Path] | None = None) -> Path:
    """Write the files of ``case`` into ``directory`` (created); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, spec in case.files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec is DIRECTORY:
            path.mkdir(exist_ok=True)
        elif isinstance(spec, Link):
            if spec.hard:
                os.link(directory / spec.target, path)
            else:
                path.symlink_to(spec.target)
        elif isinstance(spec, Base):
            if base is None or spec.key not in base:
                raise LookupError(f"case {case.id} needs the base result '{spec.key}'")
            shutil.copyfile(base[spec.key], path)
            if spec.then is not None:
                spec.then(path)
        elif isinstance(spec, str):
            path.write_text(spec.replace("{dir}", str(directory)), encoding="utf-8")
        elif isinstance(spec, bytes):
            path.write_bytes(spec)
        elif callable(spec):
            spec(path)
        else:
            raise TypeError(f"case {case.id}: bad file spec for {name}: {spec!r}")
    return directory


def write_corpus(directory: Path, base: dict[str, Path] | None = None,
                 cases: list[Case] | None = None) -> list[Case]:
    """Write every case (that ``base`` allows) into ``directory/<case id>/``; return them."""
    written = []
    for item in CASES if cases is None else cases:
        needs_base = any(isinstance(spec, Base) for spec in item.files.values())
        if needs_base and base is None:
            continue
        write_case(item, Path(directory) / item.id, base)
        written.append(item)
    return written


def make_base(directory: Path) -> dict[str, Path]:
    """Compute, once, the results that cases copy and damage: a training result and its
    checkpoint (``run`` of `PROTOCOL`), a simulation result, a two-point sweep result and
    a recording. Runs ``bioplast.cli.main`` in this process (cwd: ``directory``)."""
    from bioplast import cli
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "p.yaml").write_text(PROTOCOL)
    here = os.getcwd()
    os.chdir(directory)
    try:
        for argv in (["run", "p.yaml", "-o", "r.nc", "--quiet"],
                     ["simulate", "leaky_current", "--set", "n_units=8", "--trials", "3",
                      "--steps", "20", "-o", "s.nc", "--quiet"],
                     ["sweep", "p.yaml", "--grid", "seed=0,1", "--workers", "1", "-o",
                      "sw.nc", "--quiet"]):
            code = cli.main(argv)
            if code != 0:
                raise RuntimeError(f"bioplast {' '.join(argv)} exited with {code}")
    finally:
        os.chdir(here)
    recording(directory / "rec.nc")
    return {"train": directory / "r.nc", "checkpoint": directory / "r.nc.checkpoint.pt",
            "sim": directory / "s.nc", "sweep": directory / "sw.nc",
            "sweep_shards": directory / "sw.nc.shards", "protocol": directory / "p.yaml",
            "recording": directory / "rec.nc"}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_corpus.py DIRECTORY", file=sys.stderr)
        return 2
    directory = Path(argv[0]).resolve()
    base = make_base(directory / "_base")
    cases = write_corpus(directory, base)
    (directory / "cases.json").write_text(json.dumps(
        [{"id": c.id, "argv": c.argv_in(directory / c.id), "expect": c.expect, "dos": c.dos,
          "code": list(c.code), "usage": c.usage} for c in cases], indent=1))
    print(f"{len(cases)} cases in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
