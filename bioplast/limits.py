"""Bounds on what a file or an argument may ask of the machine.

A small file must not make bioplast hang or exhaust memory (a YAML alias bomb, an equation
whose symbolic expansion never ends, a header that claims terabytes). Every bound here is
checked *before* the work it protects, and a miss is an `InputError` naming the file and key.

- YAML documents (models, protocols): at most `MAX_DOCUMENT_BYTES` of text, nested at most
  `MAX_DOCUMENT_DEPTH` deep, and at most `MAX_DOCUMENT_NODES` values once aliases are
  expanded (see `check_yaml_nodes`).
- Equations: at most `MAX_EXPRESSION_CHARS` per line and `MAX_EQUATIONS_CHARS` in all;
  numeric exponents at most `MAX_EXPONENT` in size, and the polynomial degree that nested
  powers build at most `MAX_DEGREE` (`check_expression`, before any symbolic work); and
  reading a model runs under a wall-clock bound of `SYMBOLIC_SECONDS` (`time_bound`).
- Memory: arrays are sized before they are allocated and refused when they need more than
  the memory available now (`check_memory`).
"""

from __future__ import annotations

import ast
import contextlib
import math
import os
import signal
import threading
import time

from .errors import InputError

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DOCUMENT_NODES = 100_000
MAX_DOCUMENT_DEPTH = 64
MAX_EXPRESSION_CHARS = 10_000
MAX_EQUATIONS_CHARS = 100_000
MAX_EXPRESSION_DEPTH = 50
MAX_EXPONENT = 64
#: the longest name of a variable or coupling (netCDF holds names of up to 256 bytes, and
#: results add prefixes such as ``snapshot_``)
MAX_NAME_CHARS = 128
MAX_DEGREE = 256
SYMBOLIC_SECONDS = 5.0
#: the largest seed (numpy and torch both take seeds below 2**63 as plain integers)
MAX_SEED = 2**63 - 1


def available_memory() -> int:
    """Bytes of memory available to allocate now (Linux: MemAvailable; else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def format_bytes(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n_bytes) < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.3g} EiB"


def check_memory(n_bytes: float, what: str, *, file: str | None = None,
                 key: str | None = None, line: int | None = None) -> None:
    """InputError if ``n_bytes`` (an estimate, on the low side, of what ``what`` will
    allocate) exceeds the memory available now."""
    available = available_memory()
    if n_bytes > available:
        raise InputError(f"{what} needs about {format_bytes(n_bytes)} of memory, more "
                         f"than is available ({format_bytes(available)})", file=file,
                         key=key, line=line)


def array_bytes(*shape: int, itemsize: int = 8) -> float:
    """Bytes of an array of ``shape`` (a float, so that absurd shapes do not overflow)."""
    return float(math.prod(float(max(size, 0)) for size in shape)) * itemsize


def check_seed(seed, *, file: str | None = None, key: str | None = None) -> int:
    """``seed`` as an int in [0, MAX_SEED], else InputError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"a seed must be an integer from 0 to 2**63 - 1, got {seed!r}"
                         [:200], file=file, key=key)
    return seed


# ---------------------------------------------------------------------- YAML documents
def check_yaml_nodes(root, *, file: str) -> None:
    """InputError if the composed YAML node tree ``root`` is nested deeper than
    `MAX_DOCUMENT_DEPTH` or expands (aliases followed) to more than `MAX_DOCUMENT_NODES`
    values. Shared nodes are counted once per use, computed without expanding them."""
    import yaml
    sizes: dict[int, int] = {}
    # iterative post-order walk over distinct nodes (an alias is the same node object)
    stack = [(root, 0, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_DOCUMENT_DEPTH:
            raise InputError(f"the document is nested more than {MAX_DOCUMENT_DEPTH} levels "
                             "deep", file=file, line=node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[id(node)] = 1
            continue
        if not children_done:
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children
                         if id(child) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(child), 1) for child in children)
        if total > MAX_DOCUMENT_NODES:
            raise InputError(f"the document expands to more than {MAX_DOCUMENT_NODES} values "
                             "(aliases repeating aliases?)", file=file,
                             line=node.start_mark.line + 1)
        sizes[id(node)] = total


# ---------------------------------------------------------------------- expressions
class ExpressionTooLarge(ValueError):
    """An expression beyond the bounds above; the message says which."""


class TimeBoundExceeded(BaseException):
    """Raised by `time_bound` when its block runs too long (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` in a library swallows it)."""


def check_expression(code: str) -> None:
    """Raise `ExpressionTooLarge` if the Brian2 expression (or unit) ``code`` is longer than
    `MAX_EXPRESSION_CHARS`, nested deeper than `MAX_EXPRESSION_DEPTH`, raises something to
    a numeric power beyond `MAX_EXPONENT` in size, or builds a polynomial degree above
    `MAX_DEGREE` by nested powers. The text is parsed with Python's `ast` only to measure
    it (never evaluated); text that Python cannot parse is left to Brian2's parser."""
    if len(code) > MAX_EXPRESSION_CHARS:
        raise ExpressionTooLarge(f"longer than {MAX_EXPRESSION_CHARS} characters")
    depth = max_depth = 0
    for char in code:
        depth += (char == "(") - (char == ")")
        max_depth = max(max_depth, depth)
    if max_depth > MAX_EXPRESSION_DEPTH:
        raise ExpressionTooLarge(f"parentheses nested more than {MAX_EXPRESSION_DEPTH} deep")
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError):
        return
    except RecursionError:
        raise ExpressionTooLarge("too deeply nested to analyse") from None
    try:
        _degree(tree.body)
    except RecursionError:
        raise ExpressionTooLarge("too many operations chained to analyse") from None


def _number(node) -> float | None:
    """The value of a numeric constant expression (bounded), or None if it is not one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return float(node.value) if abs(node.value) < 1e308 else math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _number(node.operand)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp):
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow):
            _check_exponent(right)
            try:
                return float(left) ** right if left >= 0 or right == int(right) else None
            except (OverflowError, ZeroDivisionError):
                return math.inf
        operations = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                      ast.Mult: lambda a, b: a * b,
                      ast.Div: lambda a, b: a / b if b else math.inf}
        operation = operations.get(type(node.op))
        return None if operation is None else operation(left, right)
    return None


def _check_exponent(value: float) -> None:
    if not abs(value) <= MAX_EXPONENT:
        shown = f"{value:g}" if math.isfinite(value) else "beyond float range"
        raise ExpressionTooLarge(f"an exponent of {shown} (numeric exponents may be at most "
                                 f"{MAX_EXPONENT} in size)")


def _degree(node) -> float:
    """An upper bound of the polynomial degree of ``node`` in its symbols (1 for a symbol
    or call, 0 for a number); raises ExpressionTooLarge past `MAX_DEGREE`."""
    if _number(node) is not None:
        return 0.0
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base = _degree(node.left)
        exponent = _number(node.right)
        if exponent is None:
            _degree(node.right)
            return max(base, 1.0)
        _check_exponent(exponent)
        degree = base * abs(exponent)
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        degree = _degree(node.left) + _degree(node.right)
    else:
        children = list(ast.iter_child_nodes(node))
        degree = max([_degree(child) for child in children], default=1.0)
        degree = max(degree, 1.0) if isinstance(node, (ast.Name, ast.Call)) else degree
    if degree > MAX_DEGREE:
        raise ExpressionTooLarge(f"powers nested to a polynomial degree above {MAX_DEGREE}")
    return degree


@contextlib.contextmanager
def time_bound(seconds: float, what: str):
    """Raise `TimeBoundExceeded` if the block runs longer than ``seconds`` (in the main
    thread of a Unix process; elsewhere the block runs unbounded). A timer already set by
    the caller (``signal.alarm``) keeps its deadline and its handler."""
    if not hasattr(signal, "setitimer") or \
            threading.current_thread() is not threading.main_thread():
        yield
        return
    started = time.monotonic()
    outer_remaining = signal.getitimer(signal.ITIMER_REAL)[0]

    def expire(signum, frame):
        if time.monotonic() - started >= seconds - 1e-3 or not callable(previous):
            raise TimeBoundExceeded(f"{what} took longer than {seconds:g} s")
        previous(signum, frame)  # the caller's own deadline came first
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_remaining or seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_remaining:
            left = outer_remaining - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))
