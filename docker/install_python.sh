#!/bin/sh
# The image's Python install steps, in one place: docker/Dockerfile runs them in its build stage, and
# tests/unit/deploy/test_docker.py runs the same RUN lines outside Docker to check that torch is resolved once.
#
#   sh docker/install_python.sh torch VENV             # a virtual environment with torch from TORCH_INDEX
#   sh docker/install_python.sh package VENV [PIP...]  # this package (the current directory) into it
#   sh docker/install_python.sh clip-tokenizer VENV    # CLIP's BPE file, from open_clip's wheel, into VENV/share
#   sh docker/install_python.sh strip VENV             # pip and caches out of it: the image runs, never installs
#
# torch comes first, from TORCH_INDEX (PyTorch's CPU index, or a CUDA one), at the version pyproject.toml
# pins. The package is then installed by the environment's own pip, which sees that torch, finds that
# it satisfies the pin and keeps it: exactly one torch, of the flavour the index gave. (Installing with
# --prefix instead does not work: pip does not see packages in a prefix it is not running from, and
# pulls torch a second time from PyPI, on Linux the CUDA build.) PIP options go to the package install
# only (the test passes --dry-run --report FILE).
set -eu

step="$1"
venv="$2"
shift 2

# extra CA certificates for a build behind an intercepting proxy (docker/build-certs/README.md)
if [ -f /build-certs/use-certs.sh ]; then . /build-certs/use-certs.sh; fi

case "$step" in
torch)
    pin="$(sed -n 's/^ *"\(torch==[^"]*\)".*/\1/p' pyproject.toml)"
    if [ -z "$pin" ]; then
        echo "install_python.sh: no torch==VERSION dependency in pyproject.toml" >&2
        exit 1
    fi
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --no-cache-dir --index-url "${TORCH_INDEX:?set TORCH_INDEX}" "$pin"
    ;;
package)
    "$venv/bin/python" -m pip install --no-cache-dir "$@" .
    ;;
clip-tokenizer)
    # the wheel only (open_clip itself needs torchvision, which the service does without)
    wheels="$(mktemp -d)"
    "$venv/bin/python" -m pip download --no-cache-dir --no-deps --dest "$wheels" \
        "open_clip_torch==${OPEN_CLIP_VERSION:?set OPEN_CLIP_VERSION}"
    "$venv/bin/python" -m zipfile -e "$wheels"/open_clip_torch-*.whl "$wheels/unpacked"
    mkdir -p "$venv/share/clip-tokenizer"
    cp "$wheels/unpacked/open_clip/bpe_simple_vocab_16e6.txt.gz" "$venv/share/clip-tokenizer/"
    rm -rf "$wheels"
    ;;
strip)
    "$venv/bin/python" -m pip uninstall --yes --quiet pip
    ;;
*)
    echo "usage: install_python.sh torch|package|clip-tokenizer|strip VENV [PIP OPTIONS]" >&2
    exit 2
    ;;
esac
