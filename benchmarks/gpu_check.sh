#!/usr/bin/env bash
# Every GPU check in one call, under 8 minutes, results in one folder:
#
#   bash benchmarks/gpu_check.sh [OUT]        (default OUT: gpu-check; run from anywhere)
#
# 1. the test suite's CuPy variants (pytest -k cupy)      -> OUT/pytest-cupy.log
# 2. NumPy vs CuPy per layer, engine on and off            -> OUT/agreement.{log,json}
#    (float64 to 1e-12, float32 to 1e-5)
# 3. notebook 07 run without Jupyter, figures saved        -> OUT/notebook07.log, OUT/notebook07/
# 4. bench model --device cuda: width 1, 224x224, batch 8  -> OUT/bench-224-b8.{log,json}
# 5. bench model --device cuda: paper geometry, 500x500    -> OUT/bench-paper-500.{log,json}
# 6. a short train --device cuda, then --resume --epochs 2 -> OUT/train.log, OUT/run/
#
# OUT/summary.txt has one line per check: its exit status and seconds. Each check has its own
# time limit, so one that hangs cannot eat the others' time. Without CuPy and a CUDA device the
# script says so in one line and exits 0.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! python -c "from tinyfcn.backend import cupy_available as a; raise SystemExit(not a())" \
    2>/dev/null; then
    echo "gpu_check: no CuPy with a CUDA device here (tinyfcn.backend.cupy_available() is False): nothing to check"
    exit 0
fi
missing=$(python - <<'EOF'
import importlib.util as u
print(" ".join(m for m in ("numpy", "cupy", "torch", "pytest", "PIL", "matplotlib", "tqdm")
               if u.find_spec(m) is None))
EOF
)
[ -n "$missing" ] && echo "gpu_check: missing Python modules: $missing (checks that need them fail)"

: > "$OUT/summary.txt"
check() {  # check NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (at most ${limit} s)"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    tail -n 3 "$OUT/$name.log"
}

python -c "import cupy; d = cupy.cuda.Device(); print('GPU:', cupy.cuda.runtime.getDeviceProperties(d.id)['name'].decode(), '| CuPy', cupy.__version__)" | tee "$OUT/device.txt"
check pytest-cupy 200 python -m pytest -q -k cupy -p no:cacheprovider --ignore=tests/test_notebooks.py
check agreement 60 python benchmarks/gpu_check.py agreement "$OUT/agreement.json"
check notebook07 60 python benchmarks/gpu_check.py notebook notebooks/07_gpu_with_cupy.ipynb "$OUT/notebook07"
check bench-224-b8 50 python -m tinyfcn.bench model --device cuda --batch 8 --rounds 5 \
    --quiet-wait 0 --json "$OUT/bench-224-b8.json"
check bench-paper-500 50 python -m tinyfcn.bench model --device cuda --geometry paper --size 500 \
    --inference-only --rounds 3 --quiet-wait 0 --json "$OUT/bench-paper-500.json"
TRAIN=(--width 0.125 --size 64 --train-images 64 --val-images 16 --batch 8 --device cuda --no-progress)
check train 50 bash -c "python -m tinyfcn train ${TRAIN[*]} --epochs 1 --out '$OUT/run' --overwrite \
    && python -m tinyfcn train --resume '$OUT/run/checkpoint.npz' --epochs 2 --device cuda --no-progress \
    && python -m tinyfcn evaluate '$OUT/run/best.npz' --device cuda"
echo "wrote $OUT/ (summary.txt, one log per check)"
