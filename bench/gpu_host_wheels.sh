#!/usr/bin/env bash
# Run here, before the GPU run: downloads into .whl/ the wheels that a GPU host without internet lacks.
# Such a host is assumed to have Python 3.12 with torch, transformers, sentence-transformers, onnxruntime,
# pillow and prometheus-client, and nothing that serves HTTP. Then, on the GPU host, in a copy of this
# repository that carries .whl/:  bash bench/gpu_host_run.sh   (see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
python3 -m pip download --quiet --dest .whl --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp --no-deps \
    "flask>=3.0" "werkzeug>=3.0" "itsdangerous>=2.1" "blinker>=1.6" "click>=8.1" "jinja2>=3.1" "markupsafe>=2.1" \
    "gunicorn>=27,<28" "h11>=0.16" "packaging" "prometheus-client>=0.20" "requests>=2.31" "urllib3>=2" "idna" "certifi" \
    "charset-normalizer" "pytest>=8" "pluggy>=1.5" "iniconfig" "sentencepiece>=0.2"
du -sh .whl && ls .whl
