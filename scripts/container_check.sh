#!/usr/bin/env bash
# Builds the CPU image of docker/Dockerfile and runs it for real, as an operator would; opt-in, not part
# of the default test run (docs/container.md has the figures it printed here). On a machine with no
# image registry and no Docker engine running, it:
#   1. starts a Docker engine if none answers (installing Debian's docker.io first if dockerd is missing),
#      and stops at the end only the engine it started;
#   2. uses BASE_IMAGE (default python:3.11-slim) if it is present or can be pulled, else makes
#      clip-vectorizer-base:bookworm from Debian's packages (debootstrap + docker import) and uses that;
#   3. builds the image with MODEL_DIR (default: the built-in demo model) baked in, torch from PyTorch's
#      CPU index or, when that cannot be reached, from the Python registry, and the host's CA bundle for
#      pip in the build stages only; then builds again after a code-only change;
#   4. runs it, checks live, ready, /meta and /vectorize from the host, then starts the go-built Weaviate
#      on the host with CLIP_INFERENCE_API pointing at the container, imports the demo sample set and
#      runs a nearText search with clip-weaviate (scripts/container_stack.py);
#   5. runs it again with a random-weight model mounted at /app/models, which must win over the baked one,
#      and once more with the reference image's models/openclip mounted there (made by the reference's own
#      code path, tests/reference_openclip.py, under .reference-env), whose vectors it must give;
#   6. removes the containers and the files it put in the build context, and prints the figures.
# Usage: bash scripts/container_check.sh      (as root, or as a user of the docker group with the engine up)
# Environment: IMAGE (default clip-vectorizer:check), BASE_IMAGE, MODEL_DIR, TORCH_INDEX, KEEP_IMAGE=0 to
# remove the image at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PYTHON="${PYTHON:-python3}"
IMAGE="${IMAGE:-clip-vectorizer:check}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}"
LOCAL_BASE="clip-vectorizer-base:bookworm"
MODEL_DIR="${MODEL_DIR:-$ROOT/vectorizer_module/default_model}"
export DOCKER_BUILDKIT=0  # the legacy builder: Debian's docker.io has no buildx
WORK="$(mktemp -d /tmp/container-check.XXXXXX)"
STAMP="vectorizer_module/_build_stamp.py"
started_engine=""
copied_model=""
containers=()
figures=()

say() { printf '\n==> %s\n' "$*"; }
# the files of docker/model/ other than its own README and .gitignore (find's further arguments appended)
model_files() { find docker/model -mindepth 1 ! -name README.md ! -name .gitignore "$@"; }
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
figure() { figures+=("$1"); printf '    %s\n' "$1"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
    local status=$?
    for name in "${containers[@]}"; do docker rm -f "$name" >/dev/null 2>&1 || true; done
    if [ -n "$copied_model" ]; then
        model_files -exec rm -rf {} + 2>/dev/null || true
    fi
    rm -f docker/build-certs/host-ca.crt "$STAMP"
    if [ "${KEEP_IMAGE:-1}" = "0" ]; then docker rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
    if [ -n "$started_engine" ]; then
        kill "$started_engine" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$started_engine" 2>/dev/null || break; sleep 0.5; done
        echo "stopped the Docker engine this script started (pid $started_engine)"
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

say "Docker engine"
if docker info >/dev/null 2>&1; then
    echo "an engine answers: $(docker info --format '{{.ServerVersion}}, {{.Driver}}')"
else
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "no dockerd: installing Debian's docker.io"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null
    fi
    dockerd >"$WORK/dockerd.log" 2>&1 &
    started_engine=$!
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; echo "dockerd did not answer" >&2; exit 1; }
    echo "started dockerd (pid $started_engine): $(docker info --format '{{.ServerVersion}}, {{.Driver}}')"
fi

say "base image"
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "$BASE_IMAGE is here"
elif timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "pulled $BASE_IMAGE"
else
    echo "$BASE_IMAGE cannot be pulled: using $LOCAL_BASE, Debian bookworm with python3 and python3-venv"
    BASE_IMAGE="$LOCAL_BASE"
    if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
        started=$(now)
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; exit 1; }
        rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
        tar -C "$WORK/rootfs" -c . | docker import - "$LOCAL_BASE" >/dev/null
        rm -rf "$WORK/rootfs"
        figure "local base image made in $(since "$started") s ($(docker image inspect -f '{{.Size}}' "$LOCAL_BASE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
    fi
fi

say "build inputs"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
if ! curl -fsS -m 10 -o /dev/null "$TORCH_INDEX/torch/" 2>/dev/null; then
    TORCH_INDEX="${PIP_INDEX_URL:-https://pypi.org/simple}"
    echo "PyTorch's CPU index cannot be reached: torch comes from $TORCH_INDEX (its Linux wheel is the CUDA build)"
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt docker/build-certs/host-ca.crt
    echo "the host's CA bundle goes to pip in the build and model stages (not to the final image)"
fi
if [ -n "$(model_files -print -quit)" ]; then
    echo "docker/model/ holds files of yours: move them away first (this check bakes MODEL_DIR there and" >&2
    echo "empties the folder when it ends), or name that directory as MODEL_DIR" >&2
    exit 1
fi
copied_model=1
cp -a "$MODEL_DIR"/. docker/model/
echo "model baked in: $MODEL_DIR ($(du -sh "$MODEL_DIR" | cut -f1))"

build() {
    docker build --network host -f docker/Dockerfile \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_INDEX="$TORCH_INDEX" --build-arg MODEL_ID=local \
        -t "$IMAGE" . >"$WORK/build-$1.log" 2>&1 || { tail -40 "$WORK/build-$1.log"; exit 1; }
    grep -m1 "Sending build context" "$WORK/build-$1.log" || true
}

say "build ($IMAGE)"
started=$(now)
build first
figure "build from $BASE_IMAGE: $(since "$started") s (cold when the engine had no layers of this file cached)"
printf '# code-only change made by scripts/container_check.sh; removed when it ends\nBUILT_AT = "%s"\n' "$(date -u +%FT%TZ)" >"$STAMP"
started=$(now)
build rebuild
figure "rebuild after a code-only change: $(since "$started") s"
figure "image size: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.2f GB", $1 / 1e9 }')"
figure "layers: $(docker history --format '{{.Size}}' "$IMAGE" | paste -sd' ')"

say "the image's contents"
"$PYTHON" scripts/container_stack.py inspect-image "$IMAGE"

say "run with the baked model"
port=$(free_port)
containers+=("clip-check-baked")
started=$(now)
docker run -d --name clip-check-baked -p "127.0.0.1:$port:8080" "$IMAGE" >/dev/null
"$PYTHON" scripts/container_stack.py wait-ready "http://127.0.0.1:$port" --timeout 300 --container clip-check-baked
figure "docker run to ready: $(since "$started") s"
docker logs clip-check-baked 2>&1 | grep -m1 "model director" || true
"$PYTHON" scripts/container_stack.py check-service "http://127.0.0.1:$port" --container clip-check-baked \
    --expect-dir /opt/clip-vectorizer/model
demo_flag=()
if [ "$(cd "$MODEL_DIR" && pwd -P)" = "$(cd vectorizer_module/default_model && pwd -P)" ]; then demo_flag=(--demo-model); fi
"$PYTHON" scripts/container_stack.py weaviate "http://127.0.0.1:$port" --workdir "$WORK/stack" "${demo_flag[@]}"
figure "container memory after the import: $(docker stats --no-stream --format '{{.MemUsage}}' clip-check-baked)"

say "float32 on the CPU (as on a host without native bfloat16): ONNX Runtime on the export made at build time"
port=$(free_port)
containers+=("clip-check-onnx")
docker run -d --name clip-check-onnx -p "127.0.0.1:$port:8080" -e VECTORIZER_DTYPE=float32 "$IMAGE" >/dev/null
"$PYTHON" scripts/container_stack.py wait-ready "http://127.0.0.1:$port" --timeout 300 --container clip-check-onnx
backend=$(curl -s "http://127.0.0.1:$port/meta" | "$PYTHON" -c 'import json,sys; m=json.load(sys.stdin)["clip-vectorizer"]; print(m["backend"], "-", m["backend_reason"])')
echo "backend: $backend"
case "$backend" in onnx*) ;; *) echo "expected the onnx backend" >&2; exit 1 ;; esac
if docker logs clip-check-onnx 2>&1 | grep -q "exporting the"; then echo "the service exported again" >&2; exit 1; fi
figure "float32 (onnx, exported at build) docker run to ready: $(docker logs clip-check-onnx 2>&1 | grep -m1 -o 'after [0-9.]* s')"

say "run with a model mounted at /app/models (the reference image's path), read-only, in 2 GiB"
"$PYTHON" -m clip_training make-random-model "$WORK/mounted" --arch tiny --seed 3 >/dev/null
chmod -R a+rX "$WORK/mounted"
port=$(free_port)
containers+=("clip-check-mounted")
# as the Helm chart runs it: a read-only root with /tmp writable, and a memory limit that `auto` reads
docker run -d --name clip-check-mounted -p "127.0.0.1:$port:8080" -v "$WORK/mounted:/app/models:ro" \
    --read-only --tmpfs /tmp --memory 2g "$IMAGE" >/dev/null
"$PYTHON" scripts/container_stack.py wait-ready "http://127.0.0.1:$port" --timeout 300 --container clip-check-mounted
"$PYTHON" scripts/container_stack.py check-service "http://127.0.0.1:$port" --container clip-check-mounted \
    --expect-dir /app/models --expect-workers-line "memory limit 2048 MiB"

say "run with the reference image's OpenCLIP folder mounted at /app/models (no tokenizer in it)"
"$PYTHON" scripts/container_stack.py reference-openclip "$WORK/reference-openclip"
port=$(free_port)
containers+=("clip-check-openclip")
# float32, as the parity tests compare (auto picks bfloat16 on CPUs with it: cosine >= 0.999, precision.py)
docker run -d --name clip-check-openclip -p "127.0.0.1:$port:8080" -e VECTORIZER_DTYPE=float32 \
    -v "$WORK/reference-openclip/models:/app/models:ro" "$IMAGE" >/dev/null
"$PYTHON" scripts/container_stack.py wait-ready "http://127.0.0.1:$port" --timeout 300 --container clip-check-openclip
"$PYTHON" scripts/container_stack.py check-reference-openclip "http://127.0.0.1:$port" "$WORK/reference-openclip"

say "figures"
printf '    %s\n' "${figures[@]}"
echo "container check passed"
