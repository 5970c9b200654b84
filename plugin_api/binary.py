"""Find the ``weaviate-server`` binary that ``scripts/install.sh`` builds with ``go install``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from plugin_api.errors import WeaviateBinaryNotFound

WEAVIATE_VERSION = "v1.39.0"
BINARY_NAME = "weaviate-server"
ENV_VAR = "WEAVIATE_SERVER_BIN"
BUILD_COMMAND = f"go install github.com/weaviate/weaviate/cmd/weaviate-server@{WEAVIATE_VERSION}"


def _go_bin_dirs() -> list[Path]:
    """``$(go env GOBIN)`` / ``$(go env GOPATH)/bin`` when Go is installed, and Go's default ``~/go/bin``."""
    dirs: list[Path] = []
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go:
        try:
            out = subprocess.run(
                [go, "env", "GOBIN", "GOPATH"], capture_output=True, text=True, timeout=20, check=True
            ).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            out = []
        if len(out) >= 1 and out[0].strip():
            dirs.append(Path(out[0].strip()))
        if len(out) >= 2:
            dirs.extend(Path(p) / "bin" for p in out[1].strip().split(os.pathsep) if p)
    dirs.append(Path.home() / "go" / "bin")
    return dirs


def find_weaviate_server(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The binary to run: ``explicit``, else ``$WEAVIATE_SERVER_BIN``, else ``weaviate-server`` on PATH,
    else in Go's bin directory. Raises :class:`WeaviateBinaryNotFound` naming every place tried."""
    tried: list[str] = []
    for label, candidate in (("argument", explicit), (f"${ENV_VAR}", os.environ.get(ENV_VAR))):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise WeaviateBinaryNotFound(f"{label} names {path}, which is not an executable file")
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    tried.append(f"{BINARY_NAME} on PATH")
    for directory in _go_bin_dirs():
        path = directory / BINARY_NAME
        if path.is_file() and os.access(path, os.X_OK):
            return path
        tried.append(str(path))
    raise WeaviateBinaryNotFound(
        f"no {BINARY_NAME} binary found (looked for: {', '.join(dict.fromkeys(tried))}). "
        f"Build it with `bash scripts/install.sh` or `{BUILD_COMMAND}` (Go >= 1.26), "
        f"or set {ENV_VAR} to its path"
    )
