"""What every reproduction shares: table rows, the machine they ran on, REPRODUCTIONS.md."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parent.parent.parent
PROTOCOLS = REPO / "protocols" / "papers"
COLUMNS = ("claim", "paper", "bioplast", "agrees", "command", "runtime")


def command(name: str, scale: str, workers: int) -> str:
    return f"python benchmarks/reproduce.py {name} --{scale} --workers {workers}"


def row(claim: str, paper: str, bioplast: str, agrees: bool | str, command_text: str,
        runtime_s: float) -> dict:
    """One table row (``agrees``: True/False, or a word such as "n/a")."""
    if isinstance(agrees, (bool, np.bool_)):
        agrees = "yes" if agrees else "no"
    return {"claim": claim, "paper": paper, "bioplast": bioplast, "agrees": agrees,
            "command": command_text, "runtime_s": round(float(runtime_s), 1)}


def design_row(claim: str, paper: str, expected: str, resolves: bool | str,
               design: str) -> dict:
    """One row of a design check: what the design would report if the paper were true
    (``expected``), and whether the paper's own value lies inside that interval."""
    if isinstance(resolves, (bool, np.bool_)):
        resolves = "yes" if resolves else "no"
    return {"claim": claim, "paper": paper, "expected": expected, "resolves": resolves,
            "design": design}


def design_table(rows: list[dict]) -> list[str]:
    """Markdown lines of design-check ``rows``."""
    lines = ["| claim | paper | the design would report, if the paper is true | "
             "paper's value inside | design |", "|---|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['paper']} | {r['expected']} | {r['resolves']} | "
              f"{r['design']} |" for r in rows]
    return lines


def design_for(claim: str, design: list[dict]) -> dict | None:
    """The design-check row of a result row's ``claim``: the one whose claim starts it
    (the longest such), or None."""
    matches = [d for d in design if claim.startswith(d["claim"])]
    return max(matches, key=lambda d: len(d["claim"])) if matches else None


def table(rows: list[dict], design: list[dict] | None = None) -> list[str]:
    """Markdown lines of ``rows``; with the ``design`` check's rows, a column beside each
    row with what the design would report if the paper were true (and whether the
    paper's own value lies inside: where not, a "no" cannot tell), and the design rows
    that match no result row after the table."""
    columns = list(COLUMNS)
    if design is not None:
        columns.insert(columns.index("agrees") + 1, "the design, if the paper is true")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [r["claim"], r["paper"], r["bioplast"], r["agrees"]]
        if design is not None:
            check = design_for(r["claim"], design)
            cells.append("n/a" if check is None else
                         f"{check['expected']} (paper's value inside: {check['resolves']})")
        cells += [f"`{r['command']}`", f"{r['runtime_s'] / 60:.1f} min"]
        lines.append("| " + " | ".join(cells) + " |")
    unmatched = [d for d in design or [] if not any(r["claim"].startswith(d["claim"])
                                                     for r in rows)]
    if unmatched:
        lines += ["", "Design checks without a result row:", "", *design_table(unmatched)]
    return lines


def spread(values) -> str:
    """``mean +- sd (n = k)`` of finite values."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return "none"
    return f"{values.mean():.3g} +- {values.std(ddof=1) if values.size > 1 else 0:.2g} " \
           f"(n = {values.size})"


def greater(a, b) -> float:
    """One-sided Mann-Whitney p-value of ``a > b``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)


def _one_torch_thread() -> None:
    import torch
    torch.set_num_threads(1)


def map_in_processes(function, argument_tuples: list[tuple], workers: int) -> list:
    """``[function(*arguments) for arguments in argument_tuples]`` on ``workers`` fresh
    processes with one torch thread each (analyses of many trained networks; ``function``
    must be importable by name), in the order given."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=max(1, workers), initializer=_one_torch_thread,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(function, *arguments) for arguments in argument_tuples]
        return [future.result() for future in futures]


def save(out: Path, rows: list[dict], details: dict | list) -> None:
    """``rows.json`` (what REPRODUCTIONS.md is made of) and ``networks.json`` (per network)."""
    (out / "networks.json").write_text(json.dumps(details, indent=1, default=float))
    (out / "rows.json").write_text(json.dumps(rows, indent=1))


def machine() -> str:
    """What the rows were measured on."""
    import torch
    model = platform.processor() or "?"
    if Path("/proc/cpuinfo").exists():
        model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30 \
        if hasattr(os, "sysconf") else float("nan")
    return (f"{os.cpu_count()} CPU cores ({model}), {memory:.0f} GiB, no GPU; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def citation(directory_name: str) -> str:
    """The paper of a reproduction's output directory (``NAME-SCALE``): its module's
    ``CITATION``."""
    import importlib
    module = importlib.import_module(f"benchmarks.papers.{directory_name.split('-')[0]}")
    return module.CITATION


def write_markdown(directories: list[Path], path: Path = REPO / "REPRODUCTIONS.md") -> Path:
    """REPRODUCTIONS.md from the rows of finished runs, figures copied to docs/ beside it;
    notes on a run (``notes.md`` in its output directory, or the versioned
    ``docs/reproductions/<directory name>.md``: where and why bioplast disagrees with the
    paper) are appended to its section; a directory's ``design.json`` (``reproduce.py NAME
    --design-check --out DIR``) puts the design check beside each row."""
    figures = path.parent / "docs" / "reproductions"
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# Reproductions", "",
             "Generated by `python benchmarks/reproduce.py --markdown ...` from the rows that "
             "`benchmarks/reproduce.py` printed and saved; do not edit by hand.", "",
             f"Machine: {machine()}.", ""]
    for directory in directories:
        rows = json.loads((directory / "rows.json").read_text())
        design_file = directory / "design.json"
        design = json.loads(design_file.read_text()) if design_file.exists() else None
        lines += [f"## {directory.name}", "", f"Paper: {citation(directory.name)}.", "",
                  *table(rows, design)]
        for figure in sorted(directory.glob("*.png")):
            target = figures / f"{directory.name}-{figure.name}"
            shutil.copyfile(figure, target)
            lines += ["", f"![{directory.name}]({target.relative_to(path.parent)})"]
        for notes in (directory / "notes.md", figures / f"{directory.name}.md"):
            if notes.exists():
                lines += ["", notes.read_text().strip()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path
