#!/usr/bin/env bash
# The GPU run, as one command on a GPU host without internet, in a copy of this repository that carries
# .whl/ (made by bench/gpu_host_wheels.sh): installs the serving packages beside the host's own torch,
# runs the CUDA tests, then the benchmark (ViT-B/32 architecture, fp16, 64 clients): a sweep of worker
# counts with the defaults, the open-loop rates of the latency target with the defaults and with the
# settings the README recommends for a GPU host (--jpeg-draft), and the cost of fixed shapes. Everything
# lands in $OUT; gpu-run.json is the one report. About 6 minutes.
#
# GPU_RUN_DRY=1 runs the same steps on the CPU with a tiny model and 2-second loads, to check the plumbing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
SECONDS_PER_LOAD=10
CUDA=(--cuda)
ARCH=vit-b-32
if [ "${GPU_RUN_DRY:-0}" = "1" ]; then SECONDS_PER_LOAD=2; CUDA=(); ARCH=tiny; fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    echo "cpus: $(nproc)"
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} > "$OUT/machine.txt" 2>&1
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install --quiet --no-index --find-links .whl --no-deps .whl/*.whl > "$OUT/pip.txt" 2>&1
    python3 -m pip install --quiet --no-deps --no-build-isolation -e . >> "$OUT/pip.txt" 2>&1
fi
if [ "${GPU_RUN_DRY:-0}" != "1" ]; then
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/integration/test_cuda.py -k "float32 or whichever" \
        > "$OUT/cuda-tests.txt" 2>&1
    echo "cuda tests: exit $?" >> "$OUT/cuda-tests.txt"
fi
MODEL="$(mktemp -d)/model"
python3 -c "import sys; from pathlib import Path; from bench.bench import build_model; build_model(Path(sys.argv[1]), sys.argv[2])" \
    "$MODEL" "$ARCH" > "$OUT/model.txt" 2>&1
bench() {  # NAME, then bench.bench's arguments
    local name="$1"; shift
    timeout 240 python3 -m bench.bench --model "$MODEL" "${CUDA[@]}" --clients 64 --seconds "$SECONDS_PER_LOAD" \
        --modes dynamic --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $?" >> "$OUT/$name.log"
}
bench sweep --workers-sweep 1,4,auto
bench rates-defaults --workers-sweep auto --loads none --rate objects=750 --rate texts=1500
bench recommended --workers-sweep auto --server-arg=--jpeg-draft --rate objects=750 --rate texts=1500
bench fixed-shape-off --workers-sweep auto --server-arg=--fixed-shape=false
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
report = {"machine": (out / "machine.txt").read_text()}
for name in ("sweep", "rates-defaults", "recommended", "fixed-shape-off"):
    path = out / f"{name}.json"
    report[name] = json.loads(path.read_text()) if path.exists() else (out / f"{name}.log").read_text()[-3000:]
tests = out / "cuda-tests.txt"
report["cuda_tests"] = tests.read_text()[-3000:] if tests.exists() else None
(out / "gpu-run.json").write_text(json.dumps(report, indent=2) + "\n")
PY
tail -n 3 "$OUT"/*.log "$OUT"/cuda-tests.txt 2>/dev/null
