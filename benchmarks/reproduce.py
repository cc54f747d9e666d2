"""Reproductions of the source papers' headline results: run one, print its table rows.

    python benchmarks/reproduce.py NAME [--smoke | --reduced | --medium | --full] [--workers 2] [--out DIR]
    python benchmarks/reproduce.py NAME --design-check [--smoke | --reduced | --medium | --full] [--draws 200]
    python benchmarks/reproduce.py NAME --resummarize [--reduced | ...] [--out DIR]   # rows again
    python benchmarks/reproduce.py --markdown DIR [DIR ...] [--to FILE]   # REPRODUCTIONS.md

NAME is one of (modules in benchmarks/papers/, their docstrings say what runs):

- ``phases``: dynamical phases of short-term memory (Kurtkaya, Dinc et al., ICML 2025);
- ``curriculum``: curricula and timescales (Khajehabdollahi, Zeraati et al., ICLR 2024);
- ``consistency``: temporal-consistency regularization and abrupt learning (Haputhanthri
  et al. 2025).

``--reduced`` (the default) runs in under an hour on 2 CPU cores, ``--smoke`` in a minute
(the test suite runs it), ``--medium`` (phases only) resolves what the reduced design cannot
(its design check prints its runtime estimate), ``--full`` is the paper's size (a GPU or a
cluster: add ``--workers``). Results go to ``--out`` (default ``reproductions/NAME-SCALE``): ``rows.json``
(the table rows), ``networks.json`` (per network) and PNG figures; the rows are printed.
Re-running the same command reuses finished sweep shards.

``--design-check`` trains nothing: it simulates the scale's design with the paper's published
numbers as the truth (`benchmarks/papers/design.py`) and prints, per claim, what the design
would report if the paper were right (5-95% over draws) and whether the paper's own value
lies inside; it writes ``design.json`` to ``--out``. A "no" in a reproduction's table means
"disagrees" only where bioplast's value falls outside that interval.

``--resummarize`` (where a reproduction has it: phases, curriculum) makes the rows and
figures of a finished run again from its saved ``networks.json`` without training (the
curriculum measures its networks' robustness again from the run's result files).

``--markdown`` writes REPRODUCTIONS.md from the ``rows.json`` of the given output
directories (the numbers are never typed), with the machine they ran on, and copies their
figures to docs/reproductions/.
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.papers.common import REPO, design_table, table, write_markdown  # noqa: E402

NAMES = ("phases", "curriculum", "consistency")


def main():
    if "--markdown" in sys.argv:  # --markdown DIR [DIR ...] [--to FILE]
        arguments = sys.argv[sys.argv.index("--markdown") + 1:]
        target = REPO / "REPRODUCTIONS.md"
        if "--to" in arguments:
            target = Path(arguments[arguments.index("--to") + 1])
            arguments = arguments[:arguments.index("--to")]
        print(f"wrote {write_markdown([Path(p) for p in arguments], target)}")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=NAMES)
    scale = parser.add_mutually_exclusive_group()
    for name in ("smoke", "reduced", "medium", "full"):
        scale.add_argument(f"--{name}", dest="scale", action="store_const", const=name)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--design-check", action="store_true",
                        help="simulate the design with the paper's numbers as the truth")
    parser.add_argument("--resummarize", action="store_true",
                        help="the rows and figures of a finished run again, from its "
                             "saved files (no training)")
    parser.add_argument("--draws", type=int, default=200,
                        help="simulated repetitions of the design (--design-check)")
    args = parser.parse_args()
    scale_name = args.scale or "reduced"
    out = args.out or REPO / "reproductions" / f"{args.name}-{scale_name}"
    out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"benchmarks.papers.{args.name}")
    if scale_name not in module.SCALES:
        parser.error(f"{args.name} has no --{scale_name} scale (it has "
                     f"{', '.join('--' + s for s in module.SCALES)})")
    if args.design_check:
        rows = module.design_check(scale_name, draws=args.draws)
        (out / "design.json").write_text(json.dumps(rows, indent=1))
        print("\n".join(design_table(rows)))
        return
    if args.resummarize and not hasattr(module, "resummarize"):
        parser.error(f"{args.name} has no --resummarize")
    rows = (module.resummarize if args.resummarize else module.run)(scale_name, out,
                                                                    args.workers)
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
