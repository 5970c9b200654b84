#!/usr/bin/env bash
# Run on the lent GPU machine, in the repository root, with .whl/ carried (bench/device_wheels.sh):
# installs the serving packages without touching its torch, then runs the CUDA tests and the GPU
# benchmark, and leaves everything in $OUT (the device tool brings that folder back).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} > "$OUT/machine.txt" 2>&1
python3 -m pip install --quiet --no-index --find-links .whl --no-deps .whl/*.whl > "$OUT/pip.txt" 2>&1
python3 -m pip install --quiet --no-deps --no-build-isolation -e . >> "$OUT/pip.txt" 2>&1
python3 -m pytest -q -p no:cacheprovider tests/integration/test_cuda.py > "$OUT/cuda-tests.txt" 2>&1
echo "cuda tests: exit $?" >> "$OUT/cuda-tests.txt"
python3 bench/bench.py --cuda --clients 64 --seconds 15 --processes 8 --out "$OUT/bench-gpu.json" \
    > "$OUT/bench-gpu.log" 2>&1
echo "bench: exit $?" >> "$OUT/bench-gpu.log"
tail -n 3 "$OUT"/cuda-tests.txt "$OUT"/bench-gpu.log
