"""The Kubernetes files under deploy/ say what the service and Weaviate's Helm chart do: the values files
set only keys the chart reads, the chart's probes and port are the service's, the plain manifests' probes,
ports, selectors, settings and grace periods fit the service and each other."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.unit.deploy.test_docker import DOCKER, env_of, final_stage, instructions
from vectorizer_module.config import OPTIONS, Settings, parse_enable_cuda
from vectorizer_module.metrics import Metrics
from vectorizer_module.server.app import create_app
from vectorizer_module.server.lifecycle import Lifecycle

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
HELM_VALUES = {"cpu": DEPLOY / "helm" / "values-cpu.yaml", "gpu": DEPLOY / "helm" / "values-gpu.yaml"}
MANIFESTS = {
    "cpu": DEPLOY / "kubernetes" / "clip-vectorizer-cpu.yaml",
    "gpu": DEPLOY / "kubernetes" / "clip-vectorizer-gpu.yaml",
}

# Weaviate's Helm chart, read at https://github.com/weaviate/weaviate-helm commit
# 4213da523db355527cf9cb2ae80821dfdbb84f03 (weaviate/Chart.yaml: version 17.8.3, appVersion 1.38.2).
# CHART_KEYS: the key paths of weaviate/values.yaml for the multi2vec-clip module and its
# PodDisruptionBudget, with the module's defaults where the tests use them; "<object>" marks a key whose
# value the template writes out whole (toYaml), so that what is under it is Kubernetes', not the chart's.
CHART_KEYS = yaml.safe_load(
    """
modules:
  default_vectorizer_module: none
  multi2vec-clip:
    enabled: false
    inferenceUrl: <object>
    tag: null
    repo: null
    registry: null
    replicas: 1
    strategy: <object>
    imagePullPolicy: null
    imagePullSecrets: <object>
    priorityClassName: null
    fullnameOverride: clip-inference
    livenessProbe: {initialDelaySeconds: 120, periodSeconds: 3, timeoutSeconds: 3}
    readinessProbe: {initialDelaySeconds: 120, periodSeconds: 3}
    envconfig:
      enable_cuda: false
      nvidia_visible_devices: null
      nvidia_driver_capabilities: null
      ld_library_path: null
    resources: <object>
    securityContext: <object>
    serviceAccountName: null
    annotations: <object>
    nodeSelector: <object>
    tolerations: <object>
podDisruptionBudgets:
  multi2vec-clip:
    enabled: false
    spec: <object>
"""
)
# What weaviate/templates/multi2vecClipDeployment.yaml (same commit) fixes instead of reading values: the
# probe paths, the container and Service port, the only environment variables it sets (ENABLE_CUDA as
# "1" or "0"); it sets no terminationGracePeriodSeconds, so the pods get Kubernetes' default.
CHART_TEMPLATE = {
    "port": 8080,
    "liveness_path": "/.well-known/live",
    "readiness_path": "/.well-known/ready",
    "env": {"ENABLE_CUDA", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "LD_LIBRARY_PATH"},
    "enable_cuda_values": ("1", "0"),
}
KUBERNETES_DEFAULT_GRACE = 30
# VECTORIZER_WORKERS is being added to vectorizer_module/config.py separately: `auto` or a positive integer
EXTRA_SETTINGS = {"VECTORIZER_WORKERS": re.compile(r"auto|[1-9][0-9]*")}
OPTION_BY_ENV = {option.env: option for option in OPTIONS}


def image_env() -> dict[str, str]:
    return env_of(final_stage(instructions(DOCKER / "Dockerfile")))


def key_paths(tree: dict, prefix: tuple = (), schema: dict | None = None) -> list[tuple[tuple, object]]:
    """(path, value) of every leaf of ``tree``, stopping at keys that ``schema`` marks <object>."""
    paths = []
    for key, value in tree.items():
        path = (*prefix, key)
        below = schema.get(key) if isinstance(schema, dict) else None
        if isinstance(value, dict) and value and below != "<object>":
            paths += key_paths(value, path, below)
        else:
            paths.append((path, value))
    return paths


def chart_has(path: tuple) -> bool:
    node = CHART_KEYS
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def helm_values(variant: str) -> dict:
    return yaml.safe_load(HELM_VALUES[variant].read_text())


def module_values(variant: str) -> dict:
    return helm_values(variant)["modules"]["multi2vec-clip"]


def manifests(variant: str) -> dict[str, dict]:
    documents = [d for d in yaml.safe_load_all(MANIFESTS[variant].read_text()) if d]
    kinds = [d["kind"] for d in documents]
    assert sorted(kinds) == sorted(set(kinds)), kinds  # one of each
    return {d["kind"]: d for d in documents}


def container(variant: str) -> dict:
    (only,) = manifests(variant)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def container_env(variant: str) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(variant)["env"]}


def port_number(port: int | str, ports: list[dict]) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in ports if p.get("name") == port]
    return match


def probe_client():
    """The service's Flask app with a model that is (not yet) ready, and its lifecycle."""
    engine = SimpleNamespace(settings=Settings(), metrics=Metrics(), ready=False, meta_body=b"{}")
    lifecycle = Lifecycle()
    return create_app(engine, lifecycle).test_client(), engine, lifecycle


def assert_live_and_ready_paths(live: str, ready: str) -> None:
    """``live`` answers 204 while the process runs; ``ready`` 503 while loading, 204 once the model is
    ready, 503 again once draining (after SIGTERM)."""
    client, engine, lifecycle = probe_client()
    assert client.get(live).status_code == 204
    assert client.get(ready).status_code == 503
    engine.ready = True
    assert client.get(ready).status_code == 204 and client.get(live).status_code == 204
    lifecycle.begin_drain()
    assert client.get(ready).status_code == 503 and client.get(live).status_code == 204


# --- Weaviate's Helm chart --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(HELM_VALUES))
def test_helm_values_set_only_keys_the_chart_reads(variant):
    values = helm_values(variant)
    paths = key_paths(values, schema=CHART_KEYS)
    unknown = [".".join(path) for path, _ in paths if not chart_has(path)]
    assert not unknown, f"not keys of the chart's values.yaml: {unknown}"
    assert values["modules"]["multi2vec-clip"]["enabled"] is True
    assert values["modules"]["default_vectorizer_module"] == "multi2vec-clip"
    assert values["podDisruptionBudgets"]["multi2vec-clip"]["enabled"] is True


def test_the_key_check_catches_a_key_the_chart_does_not_read():
    """The check above is not vacuous: a misspelt or invented key, or one at the wrong level, is caught,
    while anything under a key the template writes out whole is Kubernetes' business."""
    values = {"modules": {"multi2vec-clip": {"env": {"VECTORIZER_WORKERS": "auto"}, "resources": {"x": 1}}}}
    paths = [".".join(p) for p, _ in key_paths(values, schema=CHART_KEYS) if not chart_has(p)]
    assert paths == ["modules.multi2vec-clip.env.VECTORIZER_WORKERS"]
    assert not chart_has(("modules", "multi2vec-clip", "livenessProbe", "failureThreshold"))


def test_the_chart_probes_and_port_are_the_services():
    assert str(CHART_TEMPLATE["port"]) == image_env()["VECTORIZER_PORT"]
    assert_live_and_ready_paths(CHART_TEMPLATE["liveness_path"], CHART_TEMPLATE["readiness_path"])


@pytest.mark.parametrize("variant", sorted(HELM_VALUES))
def test_the_chart_probes_give_the_service_time_and_poll_readiness_early(variant):
    module = module_values(variant)
    ready, live = module["readinessProbe"], module["livenessProbe"]
    # ready is honest from the first second (503 until the model is warm): no reason to wait to ask it
    chart_default = CHART_KEYS["modules"]["multi2vec-clip"]["readinessProbe"]["initialDelaySeconds"]
    assert ready["initialDelaySeconds"] < chart_default
    assert 1 <= ready["periodSeconds"] <= 10
    # live only needs the port open, but the process imports torch first; three failures restart it
    assert live["initialDelaySeconds"] >= 20 and live["timeoutSeconds"] >= 2


@pytest.mark.parametrize("variant", sorted(HELM_VALUES))
def test_the_chart_deploys_the_image_with_the_settings_it_needs(variant):
    """The chart passes no environment of ours, so what a chart pod needs comes from the image: the
    shutdown grace must end inside Kubernetes' default 30 s (the chart cannot raise it), and the workers
    setting is the image's. ENABLE_CUDA as the chart writes it is a value the service understands."""
    module, env = module_values(variant), image_env()
    assert not {name for name in CHART_TEMPLATE["env"] if name.startswith("VECTORIZER_")}
    assert float(env["VECTORIZER_SHUTDOWN_GRACE"]) < KUBERNETES_DEFAULT_GRACE
    assert EXTRA_SETTINGS["VECTORIZER_WORKERS"].fullmatch(env["VECTORIZER_WORKERS"])
    on, off = CHART_TEMPLATE["enable_cuda_values"]
    assert parse_enable_cuda(on if module["envconfig"]["enable_cuda"] else off) is (variant == "gpu")
    assert module["securityContext"]["runAsUser"] == image_uid()
    assert module["replicas"] >= 2  # a rollout or a node drain never leaves Weaviate without one


def test_the_gpu_values_ask_for_a_gpu_and_the_cpu_values_for_none():
    gpu, cpu = module_values("gpu")["resources"], module_values("cpu")["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] >= 1 and gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"]
    assert "nvidia.com/gpu" not in cpu.get("limits", {}) and "nvidia.com/gpu" not in cpu.get("requests", {})
    assert any(t["key"] == "nvidia.com/gpu" for t in module_values("gpu")["tolerations"])
    strategy = module_values("gpu")["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == 0  # a rollout never waits for a spare GPU


# --- the plain manifests ----------------------------------------------------------------------------------


def image_uid() -> int:
    stage = final_stage(instructions(DOCKER / "Dockerfile"))
    (uid,) = [int(m.group(1)) for word, rest in stage if word == "RUN" for m in [re.search(r"--uid (\d+)", rest)] if m]
    return uid


@pytest.mark.parametrize("variant", sorted(MANIFESTS))
def test_manifests_set_only_settings_the_service_has_and_values_it_accepts(variant):
    env = container_env(variant)
    for name, value in env.items():
        if name in EXTRA_SETTINGS:
            assert EXTRA_SETTINGS[name].fullmatch(value), (name, value)
            continue
        assert name in OPTION_BY_ENV, f"{name} is not a setting of the service"
        option = OPTION_BY_ENV[name]
        option.parse(value)  # raises for a value the service refuses
    assert parse_enable_cuda(env["ENABLE_CUDA"]) is (variant == "gpu")


@pytest.mark.parametrize("variant", sorted(MANIFESTS))
def test_manifest_probes_and_ports_are_the_services(variant):
    ours, env = container(variant), container_env(variant)
    port = int(env.get("VECTORIZER_PORT", image_env()["VECTORIZER_PORT"]))
    ports = ours["ports"]
    assert [p["containerPort"] for p in ports] == [port]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert port_number(ours[probe]["httpGet"]["port"], ports) == port, probe
    assert ours["livenessProbe"]["httpGet"]["path"] == ours["startupProbe"]["httpGet"]["path"]
    assert_live_and_ready_paths(ours["livenessProbe"]["httpGet"]["path"], ours["readinessProbe"]["httpGet"]["path"])
    service = manifests(variant)["Service"]
    (service_port,) = service["spec"]["ports"]
    assert port_number(service_port["targetPort"], ports) == port
    # Weaviate's URL is the chart's: http://clip-inference.<namespace>.svc...:8080
    assert service["metadata"]["name"] == CHART_KEYS["modules"]["multi2vec-clip"]["fullnameOverride"]
    assert service_port["port"] == CHART_TEMPLATE["port"]


@pytest.mark.parametrize("variant", sorted(MANIFESTS))
def test_the_service_autoscaler_and_disruption_budget_select_the_deployments_pods(variant):
    objects = manifests(variant)
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(objects["Service"]["spec"]["selector"])
    assert selects(objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    # the budget lets a node drain evict a pod, and keeps one serving while it does
    budget = objects["PodDisruptionBudget"]["spec"]
    assert 1 <= budget.get("maxUnavailable", budget.get("minAvailable")) < hpa["minReplicas"]


@pytest.mark.parametrize("variant", sorted(MANIFESTS))
def test_the_pod_gets_longer_than_the_preStop_pause_and_the_shutdown_grace(variant):
    """SIGTERM comes after the preStop pause; then in-flight requests get VECTORIZER_SHUTDOWN_GRACE
    seconds; the kubelet kills at terminationGracePeriodSeconds, counted from the start of preStop."""
    pod = manifests(variant)["Deployment"]["spec"]["template"]["spec"]
    ours, env = container(variant), container_env(variant)
    grace = float(env.get("VECTORIZER_SHUTDOWN_GRACE", image_env()["VECTORIZER_SHUTDOWN_GRACE"]))
    command = ours["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > float(command[1]) + grace
    assert pod["securityContext"]["runAsUser"] == image_uid()


def test_cpu_pods_scale_by_replicas_and_gpu_pods_by_workers():
    cpu, gpu = container_env("cpu"), container_env("gpu")
    assert cpu["VECTORIZER_WORKERS"] == "1"
    # one worker's torch threads are the cores the pod asks for (torch would otherwise count the node's)
    assert int(cpu["VECTORIZER_TORCH_THREADS"]) == int(container("cpu")["resources"]["requests"]["cpu"])
    assert manifests("cpu")["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert gpu["VECTORIZER_WORKERS"] == "auto"
    resources = container("gpu")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] >= 1
    assert "nvidia.com/gpu" not in container("cpu")["resources"].get("limits", {})
    # the GPU autoscaler reads a series the service exports
    metric = manifests("gpu")["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric in {m.name for m in Metrics().registry.collect()}


# --- the documentation ------------------------------------------------------------------------------------


def test_the_docs_name_every_deploy_file_and_the_readme_links_them_after_the_container_image():
    docs = (REPO / "docs" / "kubernetes.md").read_text()
    for path in [*HELM_VALUES.values(), *MANIFESTS.values()]:
        assert str(path.relative_to(REPO)) in docs
    readme = (REPO / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert headings.index("Kubernetes") == headings.index("Container image") + 1
    section = readme.split("\n## Kubernetes\n", 1)[1].split("\n## ", 1)[0]
    assert "docs/kubernetes.md" in section
    for name in set(re.findall(r"\b(?:VECTORIZER_[A-Z_]+|ENABLE_CUDA|CUDA_CORE)\b", docs + section)):
        assert name in OPTION_BY_ENV or name in EXTRA_SETTINGS, f"{name} is not a setting of the service"
