"""Two runs of one reproduction, compared: are the networks the same?

    python benchmarks/compare_runs.py FIRST_DIR SECOND_DIR [--subset KEY,KEY,...]

Both directories are outputs of ``benchmarks/reproduce.py NAME ...`` (the same command run
twice from scratch). Compares ``networks.json`` entry by entry (every field of every network:
outcomes, epochs, per-epoch losses) and every netCDF result file the two have in common
(``*.nc``: the trained sweeps, their weights, snapshots and histories) variable by variable.
Prints, per file, how many values are bit-for-bit equal and the largest absolute difference,
and exits with status 1 when ``networks.json`` differs (the table's inputs changed) or a
result variable differs by more than ``--tolerance`` (default 1e-5: float32 sums in another
order differ by ~1e-7; a different network differs by far more).

``--subset KEYS``: the second run is a smaller design trained the same way (fewer grid
points, shorter budgets): its networks are matched to the first run's by the values of
``KEYS`` (e.g. ``lr,delay_ms,seed``), per-epoch lists and result variables are compared over
what both hold (the common grid coordinates, the shorter run's epochs). ``--ignore NAMES``
leaves out fields and variables that describe the end of a run (final parameters, the last
epoch's loss), which a shorter budget changes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import xarray as xr


#: variables that read the clock (seconds per epoch): never the same twice
CLOCK_READINGS = frozenset({"wall_time"})


def json_differences(first, second, path: str = "", match: tuple[str, ...] = (),
                     ignored: frozenset[str] = frozenset()) -> list[str]:
    """Where two JSON values differ (NaN equals NaN), as ``path: first != second`` lines;
    object fields named in ``ignored`` are left out.
    With ``match``: lists of objects pair each of ``second``'s entries with ``first``'s entry
    of the same ``match`` values, and lists of numbers are compared over their common
    start."""
    if match and isinstance(second, list) and second and isinstance(second[0], dict) \
            and all(key in second[0] for key in match):
        index = {tuple(entry.get(key) for key in match): entry for entry in first}
        lines = []
        for entry in second:
            identity = tuple(entry.get(key) for key in match)
            if identity not in index:
                lines.append(f"{path}{list(identity)}: not in the first run")
                continue
            common = {key: index[identity].get(key) for key in entry}
            lines += json_differences(common, entry, f"{path}{list(identity)}", match, ignored)
        return lines
    if match and isinstance(first, list) and isinstance(second, list) \
            and all(isinstance(v, (int, float)) for v in first + second):
        length = min(len(first), len(second))
        first, second = first[:length], second[:length]
    if isinstance(first, dict) and isinstance(second, dict):
        keys = sorted((set(first) | set(second)) - ignored, key=str)
        return [line for key in keys
                for line in json_differences(first.get(key), second.get(key), f"{path}.{key}",
                                             match, ignored)]
    if isinstance(first, list) and isinstance(second, list):
        if len(first) != len(second):
            return [f"{path}: {len(first)} entries != {len(second)}"]
        return [line for index, (a, b) in enumerate(zip(first, second))
                for line in json_differences(a, b, f"{path}[{index}]", match, ignored)]
    both_nan = (isinstance(first, float) and isinstance(second, float)
                and math.isnan(first) and math.isnan(second))
    return [] if first == second or both_nan else [f"{path}: {first!r} != {second!r}"]


def variable_differences(first: xr.Dataset, second: xr.Dataset) -> dict[str, tuple[int, int, float]]:
    """Per numeric variable both datasets hold: (values bit-for-bit equal, values, largest
    absolute difference; NaN where they are not comparable: other shapes or NaN patterns)."""
    compared = {}
    for name in sorted(set(first.data_vars) & set(second.data_vars)):
        a, b = first[name].values, second[name].values
        if a.dtype.kind not in "fiub" or b.dtype.kind not in "fiub":
            continue
        if a.shape != b.shape:
            compared[name] = (0, a.size, float("nan"))
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        equal = (a == b) | (np.isnan(a) & np.isnan(b))
        finite = np.isfinite(a) & np.isfinite(b)
        nan_pattern_same = np.array_equal(np.isnan(a), np.isnan(b))
        largest = float(np.max(np.abs(a - b)[finite], initial=0.0)) if nan_pattern_same \
            else float("nan")
        compared[name] = (int(equal.sum()), a.size, largest)
    return compared


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--subset", default="", metavar="KEY,KEY,...",
                        help="the second run is a smaller design: match networks by these keys")
    parser.add_argument("--ignore", default="", metavar="NAME,NAME,...",
                        help="fields of networks.json and result variables left out")
    args = parser.parse_args(argv)
    match = tuple(key for key in args.subset.split(",") if key)
    ignored = frozenset(name for name in args.ignore.split(",") if name) | CLOCK_READINGS
    failed = False
    summaries = [directory / "networks.json" for directory in (args.first, args.second)]
    if all(path.exists() for path in summaries):
        differences = json_differences(*(json.loads(path.read_text()) for path in summaries),
                                       match=match, ignored=ignored)
        print("networks.json: " + ("identical" if not differences
                                   else f"{len(differences)} differences"))
        for line in differences[:20]:
            print(f"  {line}")
        failed |= bool(differences)
    else:  # a run stopped before its summary: its finished result files only
        print("networks.json: not in both directories")
    common = sorted({p.name for p in args.first.glob("*.nc")}
                    & {p.name for p in args.second.glob("*.nc")})
    for name in common:
        with xr.open_dataset(args.first / name) as first, \
                xr.open_dataset(args.second / name) as second:
            if match:  # what both hold: the common coordinates of every dim
                first, second = xr.align(first, second, join="inner")
            compared = variable_differences(first.drop_vars(ignored, errors="ignore"),
                                            second.drop_vars(ignored, errors="ignore"))
        equal = sum(e for e, _, _ in compared.values())
        total = sum(n for _, n, _ in compared.values())
        largest = max((d for _, _, d in compared.values()), default=0.0, key=lambda d: (
            math.isnan(d), d))
        worst = [v for v, (_, _, d) in compared.items() if math.isnan(d) or d > args.tolerance]
        print(f"{name}: {len(compared)} variables, {equal} of {total} values bit for bit, "
              f"largest difference {largest:.3g}" + (f"; over tolerance: {', '.join(worst)}"
                                                     if worst else ""))
        failed |= bool(worst)
    if not common:
        print("no result file (*.nc) in both directories")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
