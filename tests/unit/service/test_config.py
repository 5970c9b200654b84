import dataclasses
from pathlib import Path

import pytest

from tests.fake_cgroup import fake_host
from vectorizer_module.cli import _serve_parser
from vectorizer_module.config import OPTIONS, ConfigError, Settings, load_settings, updated_settings_doc

SETTINGS_DOC = Path(__file__).resolve().parents[3] / "docs" / "settings.md"


def parse(*argv, env=None):
    return load_settings(_serve_parser().parse_args(list(argv)), env or {})


def test_defaults():
    settings = parse()
    assert settings == Settings()  # with no flag and no variable, every field keeps the default Settings declares
    assert settings.device == (settings.cuda_core if settings.enable_cuda else "cpu")


def test_flags_win_over_environment_which_wins_over_defaults():
    env = {"VECTORIZER_PORT": "9000", "VECTORIZER_HOST": "0.0.0.0", "VECTORIZER_NORMALIZE": "false"}
    assert parse(env=env).port == 9000 and parse(env=env).normalize is False
    settings = parse("--port", "9100", "--normalize", env=env)
    assert settings.port == 9100 and settings.host == "0.0.0.0" and settings.normalize is True


@pytest.mark.parametrize(
    "value,enabled,warned",
    [
        ("true", True, False),
        ("1", True, False),
        ("false", False, False),
        ("0", False, False),
        ("", False, False),
        # the reference image (app.py, tag 1.5.0) compares with "true" and "1" only
        ("TRUE", False, True),
        ("True", False, True),
        ("yes", False, True),
        ("on", False, True),
        (" 1", False, True),
    ],
)
def test_enable_cuda_keeps_the_reference_meaning(value, enabled, warned):
    from vectorizer_module.config import enable_cuda_warning

    settings = parse(env={"ENABLE_CUDA": value, "CUDA_CORE": "cuda:1"})
    assert settings.enable_cuda is enabled
    assert settings.device == ("cuda:1" if enabled else "cpu")
    assert settings.precision.dtype == "float16" if enabled else settings.precision.dtype != "float16"
    warning = enable_cuda_warning({"ENABLE_CUDA": value})
    assert (warning is not None) is warned
    assert warning is None or repr(value) in warning
    assert parse("--enable-cuda", env={"ENABLE_CUDA": value}).enable_cuda  # the flag is a plain switch


def test_invalid_values_name_their_source():
    with pytest.raises(ConfigError, match="VECTORIZER_THREADS"):
        parse(env={"VECTORIZER_THREADS": "0"})
    with pytest.raises(ConfigError, match="--max-image-pixels"):
        parse("--max-image-pixels", "many")


def test_every_settings_field_is_one_option_and_its_default_is_the_fields():
    assert [o.field for o in OPTIONS] == [f.name for f in dataclasses.fields(Settings)]
    assert all(o.default == f.default for o, f in zip(OPTIONS, dataclasses.fields(Settings)))
    assert load_settings(environ={}) == Settings()


def test_docs_settings_table_is_written_from_the_options():
    text = SETTINGS_DOC.read_text()
    assert updated_settings_doc(text) == text, (
        "docs/settings.md's table is stale: python -m vectorizer_module.config docs/settings.md"
    )
    for option in OPTIONS:
        assert f"| `{option.env}` | `{option.flag}` |" in text


def test_a_stale_default_in_the_doc_is_written_again_and_its_meaning_kept():
    text = SETTINGS_DOC.read_text()
    port = next(o for o in OPTIONS if o.env == "VECTORIZER_PORT")
    row = next(line for line in text.splitlines() if line.startswith("| `VECTORIZER_PORT`"))
    stale = text.replace(row, row.replace(f"| {port.default} |", "| 1234 |"))
    assert stale != text and updated_settings_doc(stale) == text
    missing = text.replace(row + "\n", "")
    assert port.help in updated_settings_doc(missing)  # a new option starts with its help text


def test_explicit_workers_and_threads_are_kept(monkeypatch, tmp_path):
    fake_host(monkeypatch, tmp_path, 16)
    settings = parse("--workers", "3", "--torch-threads", "2")
    assert (settings.worker_count, settings.threads_per_worker) == (3, 2)
    assert parse(env={"VECTORIZER_WORKERS": "AUTO"}).workers == "auto"
    for bad in ("0", "many", "-2"):
        with pytest.raises(ConfigError, match="--workers"):
            parse("--workers", bad)


def test_fixed_shapes_default_to_the_device_and_cuda_batches_are_shared_among_workers(monkeypatch, tmp_path):
    fake_host(monkeypatch, tmp_path, 16)
    cpu, gpu = parse(), parse(env={"ENABLE_CUDA": "1"})
    assert (cpu.fixed_shapes, gpu.fixed_shapes) == (False, True)
    assert (
        parse("--fixed-shape", "true").fixed_shapes
        and not parse("--fixed-shape", "off", env={"ENABLE_CUDA": "1"}).fixed_shapes
    )
    assert (cpu.batch_size, gpu.batch_size) == (16, 16)  # 8 workers share CUDA's 128
    assert parse("--workers", "2", env={"ENABLE_CUDA": "1"}).batch_size == 64
    assert parse("--workers", "1", "--max-batch-size", "40", env={"ENABLE_CUDA": "1"}).batch_size == 40


def test_help_names_each_value_by_its_kind_and_every_model_family():
    text = _serve_parser().format_help()
    assert "VECTORIZER_PORT" in text  # in the help text ...
    usage = text.split("\n\n")[0]
    assert "VECTORIZER_" not in usage  # ... but not as the value's name
    assert "--port PORT" in usage and "--workers {N,auto}" in usage and "--model DIR" in usage
    model_help = " ".join(text.split("--model DIR")[2].split("--host")[0].split()).replace("- ", "-")
    for family in ("CLIP", "SigLIP", "SigLIP 2", "OpenCLIP", "sentence-transformers"):
        assert family in model_help
