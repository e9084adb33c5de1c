#!/usr/bin/env bash
# The real-GPU check: `pytest -m gpu`, then a CUDA matmul loop (with a spinning-kernel phase)
# and a small training loop with DataLoader workers, each under `tracklab run --interval 0.5`,
# and one table comparing tracklab's recorded utilization, memory used, per-process memory,
# power and SM activity with torch.cuda's and nvidia-smi's over the same seconds.
#
# Needs an NVIDIA GPU, its driver (nvidia-smi) and a python with torch; runs from a fresh copy of
# the repository without installing it. Missing Python packages (sqlite-utils, say) are taken
# from ./wheels when that folder holds wheels: made where a registry is reachable with
#   python3 -m pip download sqlite-utils -d wheels
# Finishes within 5 minutes. Exit status: 0 all passed, 1 a check failed, 2 no GPU or no torch.
# $PYTHON picks the interpreter (default python3); $OUT, when set, gets the table and the logs.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tracklab-device-check.XXXXXX")
STORE="$WORK/store"
SITE="$WORK/site"
mkdir -p "$STORE" "$SITE"
BACKGROUND=()
cleanup() {
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "${OUT:-}" ]; then cp "$WORK"/*.csv "$WORK"/*.txt "$WORK"/*.json "$OUT"/ 2>/dev/null; fi
}
trap cleanup EXIT
say() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "device_check: no NVIDIA GPU here (nvidia-smi -L failed)"; exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "device_check: $PY has no torch that sees a GPU"; exit 2
fi

say "dependencies"
if compgen -G "wheels/*.whl" >/dev/null; then
    # into a folder of our own, so the image's packages stay as they are; pip's own wheel
    # (sqlite-utils depends on pip) is left out, not to shadow the image's pip
    mapfile -t wheels < <(ls wheels/*.whl | grep -v '/pip-[0-9]')
    "$PY" -m pip install -q --no-index --no-deps --disable-pip-version-check \
        --target "$SITE" "${wheels[@]}" || { echo "device_check: cannot install wheels/"; exit 2; }
fi
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export TRACKLAB_DIR="$STORE"
unset TRACKLAB_NVML_MODULE TRACKLAB_FAKE_NVML CUDA_VISIBLE_DEVICES
missing=$("$PY" - <<'PY'
import importlib.util
need = {"typer": "typer", "rich": "rich", "psutil": "psutil", "pynvml": "nvidia-ml-py",
        "sqlite_utils": "sqlite-utils", "pytest": "pytest"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PY
) || { echo "device_check: $PY cannot check its packages"; exit 2; }
if [ -n "$missing" ]; then
    echo "device_check: missing Python packages: $missing (carry them as wheels in ./wheels:"
    echo "  python3 -m pip download $missing -d wheels)"; exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__)"

say "pytest -m gpu"
# only the files holding real-GPU tests: the others may import what the image lacks
mapfile -t gpu_tests < <(grep -rl --include='test_*.py' 'mark.gpu' tests | sort)
timeout 80 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs -o addopts="--strict-markers" "${gpu_tests[@]}" \
    >"$WORK/pytest.txt" 2>&1
PYTEST_RC=$?
tail -15 "$WORK/pytest.txt"
if grep -q "skipped" "$WORK/pytest.txt"; then  # nvidia-smi saw a GPU: a skip is a failure here
    echo "device_check: a real-GPU test was skipped on a machine with a GPU"; PYTEST_RC=1
fi

watch_gpu() {  # mode: nvidia-smi every ~0.5 s (its own timestamps), and dmon's GPM SM activity
    local mode=$1
    (while :; do
        t=$(date +%s.%N)
        nvidia-smi -i 0 --query-gpu=utilization.gpu,memory.used,power.draw \
            --format=csv,noheader,nounits | sed "s/^/$t,/" >>"$WORK/smi_$mode.csv"
        nvidia-smi -i 0 --query-compute-apps=pid,used_memory --format=csv,noheader,nounits \
            | sed "s/^/$t,/" >>"$WORK/apps_$mode.csv"
        sleep 0.4
    done) &
    BACKGROUND+=($!)
    nvidia-smi dmon -i 0 -s u -o DT --gpm-metrics 2 >"$WORK/dmon_$mode.txt" 2>&1 &
    BACKGROUND+=($!)
}

stop_watching() {
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    BACKGROUND=()
}

RUNS=()
RUN_RC=0
for mode in matmul train; do
    say "tracklab run --interval 0.5 -- workload.py $mode"
    watch_gpu "$mode"
    id="devcheck-$mode-$$"
    timeout 75 "$PY" -m tracklab_cli run -q --interval 0.5 --run-id "$id" --name "$id" -- \
        "$PY" tests/gpu/workload.py "$mode" "$WORK" >"$WORK/run_$mode.txt" 2>&1
    rc=$?
    stop_watching
    tail -5 "$WORK/run_$mode.txt"
    if [ $rc -ne 0 ]; then echo "device_check: the $mode run exited $rc"; RUN_RC=1; continue; fi
    RUNS+=("$mode=$id")
done

say "tracklab show (matmul run)"
timeout 20 "$PY" -m tracklab_cli show "devcheck-matmul-$$" 2>&1 | sed -n '1,/^System/p' | head -40

say "tracklab against torch.cuda and nvidia-smi"
timeout 30 "$PY" tests/gpu/compare.py "$STORE" "$WORK" "${RUNS[@]}"
TABLE_RC=$?

say "done: pytest -m gpu exit $PYTEST_RC, runs $RUN_RC, table $TABLE_RC"
[ "$PYTEST_RC" -eq 0 ] && [ "$RUN_RC" -eq 0 ] && [ "$TABLE_RC" -eq 0 ]
