import dataclasses
import re
from pathlib import Path

import pytest

from vectorizer_module.cli import _serve_parser
from vectorizer_module.config import OPTIONS, ConfigError, Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def parse(*argv, env=None):
    return load_settings(_serve_parser().parse_args(list(argv)), env or {})


def test_defaults():
    settings = parse()
    assert settings == Settings()
    assert settings.port == 8080 and settings.device == "cpu" and settings.compute_dtype == "float32"


def test_flags_win_over_environment_which_wins_over_defaults():
    env = {"VECTORIZER_PORT": "9000", "VECTORIZER_HOST": "0.0.0.0", "VECTORIZER_NORMALIZE": "false"}
    assert parse(env=env).port == 9000 and parse(env=env).normalize is False
    settings = parse("--port", "9100", "--normalize", env=env)
    assert settings.port == 9100 and settings.host == "0.0.0.0" and settings.normalize is True


@pytest.mark.parametrize(
    "value,enabled", [("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False), ("", False)]
)
def test_enable_cuda_keeps_the_reference_meaning(value, enabled):
    settings = parse(env={"ENABLE_CUDA": value, "CUDA_CORE": "cuda:1"})
    assert settings.enable_cuda is enabled
    assert settings.device == ("cuda:1" if enabled else "cpu")
    assert settings.compute_dtype == ("float16" if enabled else "float32")


def test_invalid_values_name_their_source():
    with pytest.raises(ConfigError, match="VECTORIZER_THREADS"):
        parse(env={"VECTORIZER_THREADS": "0"})
    with pytest.raises(ConfigError, match="--max-image-pixels"):
        parse("--max-image-pixels", "many")


def test_every_option_is_a_settings_field_and_documented_in_the_readme():
    readme = README.read_text()
    assert {o.field for o in OPTIONS} == {f.name for f in dataclasses.fields(Settings)}
    for option in OPTIONS:
        row = re.search(rf"^\|\s*`{re.escape(option.env)}`\s*\|\s*`{re.escape(option.flag)}`.*$", readme, re.M)
        assert row, f"README's settings table lacks {option.env} / {option.flag}"
        assert str(option.default).lower() in row.group(0).lower(), f"README's default for {option.env}"
