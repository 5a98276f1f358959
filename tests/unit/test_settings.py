import re
from pathlib import Path

import pytest

from service.config.config_file import read_config_file
from service.config.setting import SettingsError
from service.config.settings import SECRET_VARIABLES, SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_configuration():
    settings = load_settings(environ={}, config_file=None)
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.environment is None and settings.environment_type is None
    assert settings.upstream_retries == 2


def test_environment_wins_over_config_file(tmp_path):
    config = tmp_path / "config.txt"
    config.write_text(
        "# local settings\nLOG_LEVEL=DEBUG\nPORT=6000\n\nOPENAI_BASE_URL='http://localhost:8000/v1/'\n"
    )
    settings = load_settings(environ={"LOG_LEVEL": "warning"}, config_file=config)
    assert settings.log_level == "WARNING"  # environment first, case-insensitive
    assert settings.port == 6000  # from the file
    assert settings.openai_base_url == "http://localhost:8000/v1"  # quotes and trailing slash gone


def test_missing_config_file_is_fine(tmp_path):
    assert load_settings(environ={}, config_file=tmp_path / "absent.txt").port == 5000


def test_empty_value_means_default():
    assert load_settings(environ={"LOG_LEVEL": "", "PORT": ""}, config_file=None).port == 5000


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "LOG_LEVEL",
            "LOUD",
            "LOG_LEVEL='LOUD' is not valid; use one of: DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' is not valid; use one of: text, json"),
        (
            "ENVIRONMENT_TYPE",
            "staging",
            "ENVIRONMENT_TYPE='staging' is not valid; use one of: development, test",
        ),
        ("AIPROXY_UPSTREAM_TIMEOUT", "soon", "AIPROXY_UPSTREAM_TIMEOUT='soon' is not valid; use a number"),
        ("AIPROXY_UPSTREAM_RETRIES", "99", "AIPROXY_UPSTREAM_RETRIES='99' is out of range"),
        ("PORT", "http", "PORT='http' is not valid; use a whole number"),
        ("OPENAI_BASE_URL", "api.openai.com", "OPENAI_BASE_URL='api.openai.com' is not valid; use an http"),
    ],
)
def test_bad_value_names_the_setting_and_what_it_accepts(name, value, expected):
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={name: value}, config_file=None)
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_malformed_config_line_names_the_file_and_line(tmp_path):
    config = tmp_path / "config.txt"
    config.write_text("LOG_LEVEL=INFO\nthis is not a setting\n")
    with pytest.raises(SettingsError, match=r"config.txt line 2: expected KEY=VALUE"):
        read_config_file(config)


def test_settings_repr_never_shows_secrets():
    settings = load_settings(environ={"OPENAI_API_KEY": "sk-very-secret-value"}, config_file=None)
    assert settings.source["OPENAI_API_KEY"] == "sk-very-secret-value"
    assert "sk-very-secret-value" not in repr(settings)


def test_sample_documents_every_setting_with_a_comment():
    sample = (ROOT / "config.txt.sample").read_text()
    lines = sample.splitlines()
    documented = {}
    for index, line in enumerate(lines):
        match = re.match(r"^#?([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match:
            assert lines[index - 1].startswith("# "), f"{match[1]} has no comment line above it"
            documented[match[1]] = match[2]
    for setting in SETTINGS:
        assert setting.env in documented, f"{setting.env} missing from config.txt.sample"
        assert documented[setting.env] == setting.default, f"{setting.env} default differs in the sample"
    for variable in SECRET_VARIABLES:
        assert variable in documented, f"{variable} missing from config.txt.sample"
    assert set(documented) == {s.env for s in SETTINGS} | set(SECRET_VARIABLES), (
        "sample lists unknown settings"
    )


def test_server_refuses_to_start_with_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "--config",
            "python:service.server.config",
            "service:create_app()",
        ],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "LOUD"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "aiproxy: configuration error: LOG_LEVEL='LOUD' is not valid; "
        "use one of: DEBUG, INFO, WARNING, ERROR, CRITICAL"
    ]
