"""The real tools the deployment tests run, found where scripts/install.sh puts them: helm and kubeconform
(built with ``go install`` at pinned versions), and strict JSON schemas of Kubernetes' objects for
kubeconform, converted here from the OpenAPI document of a pinned Kubernetes release (the
``k8s.io/kubernetes`` Go module, fetched from the Go module proxy: no other internet needed).

kubeconform's ``-strict`` refuses duplicate keys itself but leaves unknown fields to the schemas; the
conversion therefore closes every object schema (``additionalProperties: false``), as the "-strict"
schemas kubeconform normally downloads do. ``int-or-string`` fields and quantities take either type,
and optional fields may be null, as the API server accepts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

# keep in step with scripts/install.sh
KUBERNETES_VERSION = "v1.36.3"
HELM_MODULE = "helm.sh/helm/v4"
KUBECONFORM_MODULE = "github.com/yannh/kubeconform"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip-vectorizer" / "k8s-schemas"


class ToolMissing(RuntimeError):
    """A tool scripts/install.sh installs is not there (the deployment tests skip, saying which)."""


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ToolMissing("Go is not installed (scripts/install.sh builds helm and kubeconform with it)")
    return go


def go_env(name: str) -> str:
    return subprocess.run([_go(), "env", name], check=True, capture_output=True, text=True).stdout.strip()


def go_binary(name: str) -> Path:
    """A binary ``go install`` put in GOBIN or GOPATH/bin."""
    folder = go_env("GOBIN") or str(Path(go_env("GOPATH").split(os.pathsep)[0]) / "bin")
    path = Path(folder) / name
    if not path.is_file():
        raise ToolMissing(f"{path} is not built: run scripts/install.sh")
    return path


def openapi_document() -> Path:
    """swagger.json of the pinned Kubernetes release, from the Go module cache."""
    path = Path(go_env("GOMODCACHE")) / f"k8s.io/kubernetes@{KUBERNETES_VERSION}/api/openapi-spec/swagger.json"
    if not path.is_file():
        raise ToolMissing(f"{path} is missing: run scripts/install.sh (go mod download k8s.io/kubernetes)")
    return path


def _kind_file(group: str, version: str, kind: str) -> str:
    """kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` for a group, version and kind."""
    suffix = f"-{version}" if not group else f"-{group.split('.')[0]}-{version}"
    return f"{kind.lower()}{suffix}.json"


def _strict(node: Any, name: str = "") -> Any:
    """One OpenAPI v2 schema node as a strict JSON schema node."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if name == QUANTITY or node.get("format") == "int-or-string":
        return {"anyOf": [{"type": "string"}, {"type": "number"}], "description": node.get("description", "")}
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "properties"}
    if "properties" in node:
        required = set(node.get("required", []))  # a required field takes a value, not null
        out["properties"] = {k: _strict(v) if k in required else _nullable(v) for k, v in node["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def _nullable(node: Any) -> Any:
    converted = _strict(node)
    if isinstance(converted, dict) and isinstance(converted.get("type"), str):
        converted = {**converted, "type": [converted["type"], "null"]}
    elif isinstance(converted, dict) and "$ref" in converted:
        converted = {"anyOf": [{"$ref": converted["$ref"]}, {"type": "null"}]}
    return converted


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.removeprefix("#/definitions/"))
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)


def strict_schemas() -> Path:
    """A folder of strict standalone schemas, one per kind and version, made once per Kubernetes
    version and kept in the user's cache."""
    # named by the conversion's own code too, so that a change to it is not hidden by an older cache
    conversion = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    folder = CACHE / f"{KUBERNETES_VERSION}-standalone-strict-{conversion}"
    if (folder / "COMPLETE").is_file():
        return folder
    definitions = json.loads(openapi_document().read_text())["definitions"]
    converted = {name: _strict(schema, name) for name, schema in definitions.items()}
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            needed, todo = set(), [name]
            while todo:  # the definitions this kind reaches
                current = todo.pop()
                if current in needed:
                    continue
                needed.add(current)
                refs: set[str] = set()
                _references(converted[current], refs)
                todo.extend(refs - needed)
            document = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                **converted[name],
                "definitions": {n: converted[n] for n in sorted(needed)},
            }
            path = partial / _kind_file(gvk["group"], gvk["version"], gvk["kind"])
            path.write_text(json.dumps(document))
    (partial / "COMPLETE").write_text(KUBERNETES_VERSION + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def kubeconform(documents: str) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict on YAML documents, against the converted schemas only (no download)."""
    location = str(strict_schemas()) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return subprocess.run(
        [str(go_binary("kubeconform")), "-strict", "-summary", "-output", "text", "-schema-location", location, "-"],
        input=documents,
        capture_output=True,
        text=True,
    )


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(go_binary("helm")), *args], capture_output=True, text=True)
