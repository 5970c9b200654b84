#!/bin/sh
# The model stage's step: put the model the build arguments name into TARGET, and into HF_CACHE the configs
# of colpali-engine's default encoders (a reference-built ColPali volume needs them; best effort, when the
# hub is reachable).
#   MODEL_ID=local   the model directory in docker/model/ (copied to /local-model by the Dockerfile)
#   MODEL_ID=none    nothing (TARGET stays empty: mount a model at run time)
#   otherwise        docker/download_model.py downloads it from the Hugging Face hub, with its own
#                    huggingface_hub (and for OPEN_CLIP_MODEL_NAME open_clip's package, without its
#                    dependencies; for COLPALI_ENGINE_MODEL_NAME transformers 4.57.3 and colpali-engine,
#                    without torch) in a throwaway virtual environment of this stage
set -eu
target="$1"
hf_cache="$2"
local_model="${LOCAL_MODEL_DIR:-/local-model}"
mkdir -p "$target" "$hf_cache"
case "${MODEL_ID:-}" in
local)
    if [ -z "$(find "$local_model" -mindepth 1 ! -name README.md ! -name .gitignore -print -quit)" ]; then
        echo "fetch_model.sh: MODEL_ID=local but docker/model/ holds no model: put a model directory's files there" >&2
        exit 1
    fi
    cp -a "$local_model"/. "$target"/
    rm -f "$target/README.md" "$target/.gitignore"
    ;;
none)
    ;;
*)
    . /build-certs/use-certs.sh
    python3 -m venv /tmp/download-env
    /tmp/download-env/bin/python -m pip install --no-cache-dir "huggingface_hub>=0.30"
    if [ -n "${OPEN_CLIP_MODEL_NAME:-}" ]; then  # its registry, read without torch (download_model.py)
        /tmp/download-env/bin/python -m pip install --no-cache-dir --no-deps \
            "open_clip_torch==${OPEN_CLIP_VERSION:?set OPEN_CLIP_VERSION}"
    fi
    if [ -n "${COLPALI_ENGINE_MODEL_NAME:-}" ]; then  # its config class, under the reference's transformers
        /tmp/download-env/bin/python -m pip install --no-cache-dir "transformers==4.57.3"
        /tmp/download-env/bin/python -m pip install --no-cache-dir --no-deps "colpali-engine==0.3.13"
    fi
    /tmp/download-env/bin/python /download_model.py "$target"
    /tmp/download-env/bin/python /download_model.py --encoders "$hf_cache"
    ;;
esac
# the service runs as an unprivileged user: every baked file readable, every folder enterable
chmod -R a+rX "$target" "$hf_cache"
