#!/usr/bin/env bash
# Installs everything a fresh machine needs to run the service and its tests.
# torch is pinned and installed first, so that the packages that need it find it and add nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
WEAVIATE_VERSION="v1.39.0"   # the real Weaviate the end-to-end tests and `clip-weaviate` run
# the deployment tests' tools (keep in step with tests/k8s_tools.py): helm and kubeconform, and the
# Kubernetes release whose OpenAPI document gives the schemas every rendered object is validated against
HELM_VERSION="v4.3.2"
KUBECONFORM_VERSION="v0.8.0"
KUBERNETES_VERSION="v1.36.3"

step() { printf '\n==> %s\n' "$*"; }

step "torch ${TORCH_VERSION} (the first install downloads a few GB)"
if "$PYTHON" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '${TORCH_VERSION}')" 2>/dev/null; then
    echo "torch ${TORCH_VERSION} is already installed"
else
    "$PYTHON" -m pip install --progress-bar on "torch==${TORCH_VERSION}"
fi

step "clip-vectorizer and its test dependencies"
"$PYTHON" -m pip install --progress-bar on -e ".[test]"

step "open_clip in a folder of its own (.openclip-env), for the OpenCLIP parity tests only"
# open_clip needs torchvision, and an importable torchvision changes sentence-transformers' image pipeline,
# so neither goes into the main environment: the tests run open_clip in a subprocess with PYTHONPATH set
# to this folder. Exact versions, no dependencies (torch, regex, tqdm, huggingface_hub and safetensors
# come from the main environment).
"$PYTHON" -m pip install --progress-bar on --no-deps --upgrade --target .openclip-env \
    "open_clip_torch==3.3.0" "torchvision==0.28.0" "ftfy==6.3.1" "wcwidth==0.9.4"

step "the reference image's packages in a folder of their own (.reference-env), for its MetaCLIP 2, OpenCLIP and ColPali paths"
# Weaviate's multi2vec-clip-inference 1.5.0 pins transformers 4.57.3, whose CLIPModel loads a MetaCLIP 2
# checkpoint in its own way, open_clip 2.29.0, whose registry decides an OpenCLIP model's preprocessing, and
# colpali-engine 0.3.13 (with accelerate for its device_map="auto"), whose ModernVBERT code its ColPali path runs;
# tests/unit/service/models/test_metaclip2.py and test_openclip_reference.py run those code paths in a subprocess with this
# folder (and .openclip-env's torchvision) on PYTHONPATH. Exact versions, no dependencies.
"$PYTHON" -m pip install --progress-bar on --no-deps --upgrade --target .reference-env \
    "transformers==4.57.3" "tokenizers==0.22.1" "huggingface_hub==0.36.0" "open_clip_torch==2.29.0" \
    "colpali-engine==0.3.13" "accelerate==1.7.0" "psutil==7.2.2"

step "building Weaviate ${WEAVIATE_VERSION} (first build takes a few minutes)"
# go install puts weaviate-server in $(go env GOBIN) or $(go env GOPATH)/bin; the version is checked from
# the binary's embedded build info (`go version -m`), so a binary of another version is rebuilt.
# SKIP_WEAVIATE_BUILD=1 skips this step (the end-to-end tests then skip, saying why).
GO="$(command -v go || true)"
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
if [ "${SKIP_WEAVIATE_BUILD:-0}" = "1" ]; then
    echo "SKIP_WEAVIATE_BUILD=1: not building Weaviate"
elif [ -z "$GO" ]; then
    echo "Go (>= 1.26) is needed to build Weaviate: install Go 1.26 or newer (from your package" >&2
    echo "manager), or set SKIP_WEAVIATE_BUILD=1 to install without Weaviate." >&2
    exit 1
else
    GOBIN_DIR="$("$GO" env GOBIN)"
    if [ -z "$GOBIN_DIR" ]; then GOBIN_DIR="$("$GO" env GOPATH | cut -d: -f1)/bin"; fi
    # go_tool BINARY MODULE PACKAGE VERSION: go install, unless the binary there was built from that
    # module version (read from its embedded build info), so a cached build is kept between runs
    go_tool() {
        local bin="${GOBIN_DIR}/$1" module="$2" package="$3" version="$4" built
        built="$("$GO" version -m "$bin" 2>/dev/null | awk -v m="$module" '$1 == "mod" && $2 == m { print $3 }')"
        if [ -x "$bin" ] && [ "$built" = "$version" ]; then
            echo "$1 ${version} is already built: ${bin}"
        else
            "$GO" install "${package}@${version}"
            echo "built ${bin} (${version})"
        fi
    }
    go_tool weaviate-server github.com/weaviate/weaviate github.com/weaviate/weaviate/cmd/weaviate-server "$WEAVIATE_VERSION"
    step "helm ${HELM_VERSION}, kubeconform ${KUBECONFORM_VERSION} and Kubernetes ${KUBERNETES_VERSION}'s OpenAPI document"
    go_tool helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
    go_tool kubeconform github.com/yannh/kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
    "$GO" mod download "k8s.io/kubernetes@${KUBERNETES_VERSION}"
    case ":$PATH:" in
        *":${GOBIN_DIR}:"*) ;;
        *) echo "note: ${GOBIN_DIR} is not on PATH; clip-weaviate and the tests look there anyway" ;;
    esac
fi

# pyenv puts new console scripts on PATH only after a rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi

step "done: $(command -v clip-vectorizer || echo "clip-vectorizer (python3 -m vectorizer_module)"), $(command -v clip-weaviate || echo "clip-weaviate (python3 -m plugin_api)") and $(command -v clip-train || echo "clip-train (python3 -m clip_training)") are installed"
