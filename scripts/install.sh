#!/usr/bin/env bash
# Installs everything a fresh machine needs to run the service and its tests.
# torch is pinned and installed first, so that the packages that need it find it and add nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"

step() { printf '\n==> %s\n' "$*"; }

step "torch ${TORCH_VERSION} (the first install downloads a few GB)"
if "$PYTHON" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${TORCH_VERSION}')" 2>/dev/null; then
    echo "torch ${TORCH_VERSION} is already installed"
else
    "$PYTHON" -m pip install --progress-bar on "torch==${TORCH_VERSION}"
fi

step "clip-vectorizer and its test dependencies"
"$PYTHON" -m pip install --progress-bar on -e ".[test]"

# pyenv puts new console scripts on PATH only after a rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

step "done: $(command -v clip-vectorizer || echo "clip-vectorizer (python3 -m vectorizer_module)") is installed"
