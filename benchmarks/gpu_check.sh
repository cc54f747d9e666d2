#!/usr/bin/env bash
# GPU readiness check (issue 15, item 5): on a machine with CUDA, run the CUDA tests
# (tests/test_cuda.py: CPU float64 vs CUDA float64 <= 1e-10 for every shipped model, small
# ensembles trained on CUDA equal to the CPU's) and the papers' loops benchmark on the GPU
# (benchmarks/papers_loops.py --device cuda), then print the performance table for the
# README. Sized for under 8 minutes on one H200; each step has its own time limit.
#
# On a machine without CUDA (no nvidia-smi) it says so and exits 0 without running anything
# heavy, so CI and laptops can call it.
#
#   bash benchmarks/gpu_check.sh [--quick] [--cpu]
#     --quick   smoke sizes for the benchmark (seconds; checks the script itself)
#     --cpu     also run the benchmark on this machine's CPU (1 thread), for a same-machine
#               comparison (adds ~3 minutes)
#   environment:
#     PYTHON          interpreter with a CUDA build of torch and bioplast's dependencies
#                     (default: .venv/bin/python if it exists, else python3)
#     GPU_CHECK_OUT   folder for the logs and JSON (default: out/gpu_check)
#
# Exit status: 0 when everything ran and passed (or when there is no CUDA here), 1 when a
# step failed or timed out, 2 when CUDA is here but the interpreter cannot use it.
set -u
cd "$(dirname "$0")/.." || exit 1

quick=""
cpu=0
for argument in "$@"; do
    case "$argument" in
        --quick) quick="--quick" ;;
        --cpu) cpu=1 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option '$argument' (--quick, --cpu)" >&2; exit 2 ;;
    esac
done

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no CUDA on this machine (nvidia-smi not found): nothing to check."
    echo "gpu_check: tests/test_cuda.py is skipped here; GPU numbers are not measured."
    exit 0
fi

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
out="${GPU_CHECK_OUT:-out/gpu_check}"
mkdir -p "$out" || exit 1
started=$(date +%s)

echo "== gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname)"
nvidia-smi -L || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if ! "$PYTHON" - <<'EOF'
import sys
import torch
print(f"python {sys.version.split()[0]} ({sys.executable}), torch {torch.__version__}, "
      f"CUDA build {torch.version.cuda}")
if not torch.cuda.is_available():
    print("gpu_check: this torch cannot use the GPU (a CPU build? constraints.txt pins a CPU "
          "wheel for the 2-core machines): set PYTHON to an interpreter whose torch has CUDA",
          file=sys.stderr)
    sys.exit(2)
print(f"device: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible")
EOF
then
    exit 2
fi
if ! missing=$("$PYTHON" -c "import bioplast.training, bioplast.backends.torch, pytest" 2>&1); then
    echo "gpu_check: $PYTHON cannot import bioplast and pytest:" >&2
    echo "$missing" | tail -n 1 >&2
    echo "gpu_check: install them next to the CUDA torch, keeping it: $PYTHON -m pip install" \
         "--no-deps -e . and the packages of pyproject.toml's dependencies and [test] extra" >&2
    exit 2
fi

status=0

step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $out/NAME.log
    local name=$1 limit=$2
    shift 2
    echo
    echo "== $name (limit ${limit} s): $*"
    local begin=$(date +%s)
    PYTHONUNBUFFERED=1 timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local code=${PIPESTATUS[0]}
    echo "== $name: exit $code after $(( $(date +%s) - begin )) s"
    if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
        echo "gpu_check: $name ran past its ${limit} s limit" >&2
    fi
    [ "$code" -eq 0 ] || status=1
    return "$code"
}

# 1. CUDA tests; none may be skipped here (a skip would mean CUDA was not seen)
step cuda_tests 240 "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
if grep -q "skipped" "$out/cuda_tests.log"; then
    echo "gpu_check: CUDA tests were skipped on a machine with CUDA" >&2
    status=1
fi

# 2. the papers' loops against bioplast, on the GPU (float32, as the papers)
step papers_loops_cuda 200 "$PYTHON" benchmarks/papers_loops.py --device cuda $quick \
    --json "$out/papers_loops_cuda.json"

# 3. optionally the same on this machine's CPU, one thread
if [ "$cpu" -eq 1 ]; then
    step papers_loops_cpu 240 "$PYTHON" benchmarks/papers_loops.py --device cpu $quick \
        --json "$out/papers_loops_cpu.json"
fi

echo
echo "== performance table for the README ($(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), $(( $(date +%s) - started )) s in all)"
for json in "$out"/papers_loops_cuda.json "$out"/papers_loops_cpu.json; do
    [ -f "$json" ] || continue
    "$PYTHON" - "$json" <<'EOF'
import json
import sys

sys.path.insert(0, "benchmarks")
from papers_loops import markdown  # the table as the benchmark prints it

data = json.load(open(sys.argv[1]))
info = data["machine"]
print()
print(f"papers' loops vs bioplast on {info.get('cuda_device', '?') if info['device'] != 'cpu' else 'CPU'} "
      f"({info['device']}, torch {info['torch']}, {info['threads']} CPU thread(s), "
      f"{info['dtype']}{', --quick sizes' if info['quick'] else ''}):")
print()
print(markdown(data["rows"]))
EOF
done
if [ "$status" -eq 0 ]; then
    echo
    echo "gpu_check: all steps passed; logs and JSON in $out"
else
    echo
    echo "gpu_check: a step failed (see above and $out/*.log)" >&2
fi
exit "$status"
