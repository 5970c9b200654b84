"""The Kubernetes files, through the real tools that consume them: helm lints and renders the project's
chart (deploy/helm/clip-vectorizer) and the values for Weaviate's chart; kubeconform validates every
rendered object and the plain manifests strictly against Kubernetes' own schemas (tests/k8s_tools.py).
The rule the API server applied and our files once broke, no PodDisruptionBudget with both
``minAvailable`` and ``maxUnavailable``, is checked on everything rendered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests import k8s_tools
from tests.unit.deploy.test_manifests import (
    CHART_KEYS,
    CHART_TEMPLATE,
    HELM_VALUES,
    MANIFESTS,
    assert_live_and_ready_paths,
)
from vectorizer_module.config import OPTIONS, load_settings

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "deploy" / "helm" / "clip-vectorizer"
# keys the chart sets from its own values, refused under `settings`
CHART_OWNED = {"VECTORIZER_HOST", "VECTORIZER_PORT", "VECTORIZER_SHUTDOWN_GRACE", "VECTORIZER_API_KEY"}
# sample values for settings whose default is None (the rest are rendered with their defaults)
SAMPLES = {"VECTORIZER_MODEL": "/app/models", "VECTORIZER_ONNX_CACHE": "/tmp/onnx"}
# Weaviate's chart 17.8.3 (weaviate/values.yaml at the commit named in test_deploy.py) gives every module's
# disruption budget a default spec; the multi2vec-clip one is `minAvailable: 1`.
WEAVIATE_CHART_PDB_DEFAULT = {"minAvailable": 1}

# (values given with --set, what the test expects of the render): the variants an operator picks
VARIANTS = {
    "defaults": [],
    "gpu": ["gpu.enabled=true", "image.tag=0.1.0-cuda"],
    "autoscaled": ["autoscaling.enabled=true"],
    "api-key": ["apiKey.value=s3cret"],
    "existing-secret": ["apiKey.existingSecret=clip-key"],
    "model-volume": ["modelVolume.persistentVolumeClaim.claimName=clip-model"],
    "min-available": ["podDisruptionBudget.maxUnavailable=null", "podDisruptionBudget.minAvailable=1"],
    "no-budget": ["podDisruptionBudget.enabled=false"],
}


@pytest.fixture(scope="module", autouse=True)
def tools():
    try:
        k8s_tools.go_binary("helm"), k8s_tools.go_binary("kubeconform"), k8s_tools.strict_schemas()
    except k8s_tools.ToolMissing as exc:
        pytest.skip(str(exc))


def template(*sets: str, chart: Path = CHART, values: Path | None = None, flag: str = "--set"):
    """``helm template`` of ``chart`` with each of ``sets`` given with ``flag`` (the finished process)."""
    args = ["template", "release", str(chart), "--namespace", "search"]
    args += [item for s in sets for item in (flag, s)]
    args += ["--values", str(values)] if values else []
    return k8s_tools.helm(*args)


def render_text(*sets: str, **options) -> str:
    result = template(*sets, **options)
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(*sets: str, **options) -> list[dict]:
    return documents(render_text(*sets, **options))


def by_kind(documents: list[dict]) -> dict[str, dict]:
    kinds = [d["kind"] for d in documents]
    assert len(kinds) == len(set(kinds)), kinds
    return {d["kind"]: d for d in documents}


def pdb_problems(documents: list[dict]) -> list[str]:
    """Disruption budgets the API server refuses: both fields, or neither."""
    problems = []
    for doc in documents:
        if doc.get("kind") == "PodDisruptionBudget":
            fields = {"minAvailable", "maxUnavailable"} & set(doc.get("spec", {}))
            if len(fields) != 1:
                problems.append(f"{doc['metadata']['name']}: {sorted(fields) or 'neither field'}")
    return problems


def strictly_valid(text: str) -> None:
    result = k8s_tools.kubeconform(text)
    assert result.returncode == 0 and "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def secret_ref(documents: list[dict]) -> dict:
    (ref,) = [e["valueFrom"]["secretKeyRef"] for e in deployment_container(documents)["env"] if "valueFrom" in e]
    return ref


def deployment_container(documents: list[dict]) -> dict:
    (container,) = by_kind(documents)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


# --- the tools themselves ---------------------------------------------------------------------------------


def test_the_converted_schemas_refuse_an_unknown_field_and_a_wrong_type():
    good = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 8080}]}\n"
    strictly_valid(good)
    for bad in (good.replace("ports:", "portz:"), good.replace("port: 8080", "port: eighty"), good + "bogus: 1\n"):
        result = k8s_tools.kubeconform(bad)
        assert result.returncode != 0 and "Invalid: 1" in result.stdout, (bad, result.stdout)


def test_the_chart_lints_strictly():
    result = k8s_tools.helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


# --- the project's chart ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_validates_strictly_and_no_budget_has_both_fields(variant):
    text = render_text(*VARIANTS[variant])
    strictly_valid(text)
    assert not pdb_problems(documents(text))


def test_the_default_render_is_a_deployment_a_service_and_a_budget_selecting_the_same_pods():
    objects = by_kind(render())
    assert sorted(objects) == ["Deployment", "PodDisruptionBudget", "Service"]
    pods = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        objects["Deployment"]["spec"]["selector"]["matchLabels"],
        objects["Service"]["spec"]["selector"],
        objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector and selector.items() <= pods.items()
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert objects["Service"]["spec"]["ports"][0]["port"] == 8080


def test_probes_are_the_services_endpoints_and_the_pod_outlives_its_shutdown():
    documents = render("preStopSeconds=7", "shutdownGraceSeconds=20")
    container = deployment_container(documents)
    live = container["livenessProbe"]["httpGet"]["path"]
    assert container["startupProbe"]["httpGet"]["path"] == live == CHART_TEMPLATE["liveness_path"]
    assert container["readinessProbe"]["httpGet"]["path"] == CHART_TEMPLATE["readiness_path"]
    assert_live_and_ready_paths(live, container["readinessProbe"]["httpGet"]["path"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VECTORIZER_SHUTDOWN_GRACE"] == "20" and env["VECTORIZER_PORT"] == "8080"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    pod = by_kind(documents)["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 7 + 20


def test_every_setting_of_the_service_is_passable_and_the_service_accepts_the_rendered_environment():
    passable = [o for o in OPTIONS if o.env not in CHART_OWNED and o.env.startswith("VECTORIZER_")]
    values = {o.env: SAMPLES.get(o.env, str(o.default)) for o in passable}
    container = deployment_container(
        render(*[f"settings.{name}={value}" for name, value in values.items()], flag="--set-string")
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    for name, value in values.items():
        assert env.get(name) == value, name
    settings = load_settings(environ={k: v for k, v in env.items() if v is not None})
    assert settings.port == 8080 and settings.host == "0.0.0.0"


@pytest.mark.parametrize("owned", sorted(CHART_OWNED) + ["NOT_OURS", "ENABLE_CUDA"])
def test_the_values_schema_refuses_settings_the_chart_owns_or_the_service_lacks(owned):
    result = template(f"settings.{owned}=1")
    assert result.returncode != 0 and f"'{owned}'" in result.stderr, result.stderr


def test_the_api_key_comes_from_a_secret_the_chart_makes_or_one_that_exists():
    objects = by_kind(render("apiKey.value=s3cret"))
    ref = secret_ref(list(objects.values()))
    assert objects["Secret"]["metadata"]["name"] == ref["name"] and ref["key"] in objects["Secret"]["data"]
    objects = by_kind(render("apiKey.existingSecret=clip-key"))
    assert "Secret" not in objects
    assert secret_ref(list(objects.values()))["name"] == "clip-key"
    assert not any(e["name"] == "VECTORIZER_API_KEY" for e in deployment_container(render())["env"])


def test_gpu_pods_ask_for_the_gpu_tolerate_its_taint_and_turn_cuda_on():
    documents = render("gpu.enabled=true", "gpu.count=2", "nodeSelector.gpu=h100")
    container = deployment_container(documents)
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 2 == resources["requests"]["nvidia.com/gpu"]
    assert {e["name"]: e.get("value") for e in container["env"]}["ENABLE_CUDA"] == "true"
    pod = by_kind(documents)["Deployment"]["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"gpu": "h100"}
    cpu = deployment_container(render())
    assert (
        "nvidia.com/gpu" not in str(cpu["resources"])
        and {e["name"]: e.get("value") for e in cpu["env"]}["ENABLE_CUDA"] == "false"
    )


def test_the_autoscaler_is_off_by_default_and_scales_the_deployment_on_cpu_when_on():
    assert "HorizontalPodAutoscaler" not in by_kind(render())
    objects = by_kind(render("autoscaling.enabled=true", "autoscaling.maxReplicas=6"))
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in objects["Deployment"]["spec"]  # the autoscaler owns the count
    refused = template("autoscaling.enabled=true", "resources.requests.cpu=null")
    assert refused.returncode != 0 and "requests.cpu" in refused.stderr


def test_a_budget_with_both_fields_is_refused_at_render_time():
    result = template("podDisruptionBudget.minAvailable=1")
    assert result.returncode != 0 and "not both" in result.stderr


def test_a_model_volume_is_mounted_read_only_where_the_image_looks_first():
    documents = render("modelVolume.persistentVolumeClaim.claimName=clip-model")
    (mount,) = [m for m in deployment_container(documents)["volumeMounts"] if m["name"] == "model"]
    assert mount == {"name": "model", "mountPath": "/app/models", "readOnly": True}
    from tests.unit.deploy.test_manifests import image_env

    assert image_env()["VECTORIZER_MODEL"].split(":")[0] == "/app/models"


# --- the plain manifests and the values for Weaviate's chart ----------------------------------------------


def test_the_plain_manifests_validate_strictly_and_their_budgets_have_one_field():
    for path in MANIFESTS.values():
        strictly_valid(path.read_text())
        assert not pdb_problems(documents(path.read_text()))


def _weaviate_chart_budget(tmp_path: Path) -> Path:
    """A chart with what Weaviate's chart does with the module's budget values: the defaults of its
    values.yaml (CHART_KEYS, and the default spec) and a template writing the merged spec out whole."""
    chart = tmp_path / "weaviate-budget"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: weaviate-budget\nversion: 17.8.3\n")
    defaults = {
        "modules": {"multi2vec-clip": {"enabled": CHART_KEYS["modules"]["multi2vec-clip"]["enabled"]}},
        "podDisruptionBudgets": {"multi2vec-clip": {"enabled": False, "spec": WEAVIATE_CHART_PDB_DEFAULT}},
    }
    (chart / "values.yaml").write_text(yaml.safe_dump(defaults))
    (chart / "templates" / "pdb.yaml").write_text(
        '{{- $b := index .Values "podDisruptionBudgets" "multi2vec-clip" }}\n'
        '{{- if and $b.enabled (index .Values "modules" "multi2vec-clip" "enabled") }}\n'
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: clip-inference\n"
        "spec:\n  selector:\n    matchLabels:\n      app: clip-inference\n"
        "  {{- toYaml $b.spec | nindent 2 }}\n{{- end }}\n"
    )
    return chart


@pytest.mark.parametrize("variant", sorted(HELM_VALUES))
def test_the_values_for_weaviates_chart_leave_its_budget_one_field(variant, tmp_path):
    documents = render(chart=_weaviate_chart_budget(tmp_path), values=HELM_VALUES[variant])
    assert [d["kind"] for d in documents] == ["PodDisruptionBudget"]
    assert not pdb_problems(documents), yaml.safe_dump(documents)
    strictly_valid(yaml.safe_dump_all(documents))


def test_the_budget_check_catches_what_the_values_once_rendered(tmp_path):
    once = tmp_path / "values.yaml"
    once.write_text(
        "modules: {multi2vec-clip: {enabled: true}}\n"
        "podDisruptionBudgets: {multi2vec-clip: {enabled: true, spec: {maxUnavailable: 1}}}\n"
    )
    documents = render(chart=_weaviate_chart_budget(tmp_path), values=once)
    assert pdb_problems(documents) == ["clip-inference: ['maxUnavailable', 'minAvailable']"]
