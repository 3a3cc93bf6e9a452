"""Settings: environment variables, validation messages, and docs/configuration.md's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"


def test_environment_is_read_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_BUCKET", "holiday")
    monkeypatch.setenv("IB_EMBED_BATCH_SIZE", "32")
    monkeypatch.setenv("IB_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("IB_THUMBNAIL_PREFIX", "thumbs")
    settings = load_settings()
    assert settings.bucket == "holiday"
    assert settings.embed_batch_size == 32
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.thumbnail_prefix == "thumbs/"


def test_wrong_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_EMBED_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match="IB_EMBED_BATCH_SIZE='lots'"):
        load_settings()
    monkeypatch.delenv("IB_EMBED_BATCH_SIZE")
    monkeypatch.setenv("IB_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="IB_LOG_LEVEL"):
        load_settings()


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("IB_THUMBNAIL_SIZE=256\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().thumbnail_size == 256


def test_r2_account_sets_endpoint() -> None:
    assert load_settings(r2_account_id="acc").s3_endpoint == "https://acc.r2.cloudflarestorage.com"
    assert load_settings(s3_endpoint_url="http://127.0.0.1:9000").s3_endpoint == "http://127.0.0.1:9000"


def test_configuration_doc_lists_every_setting() -> None:
    text = CONFIGURATION_DOC.read_text()
    documented = set(re.findall(r"`(IB_[A-Z0-9_]+)`", text))
    expected = {"IB_" + name.upper() for name in Settings.model_fields}
    assert expected - documented == set(), "docs/configuration.md's table is missing variables"


def test_configuration_table_is_current() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_table", ROOT / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in CONFIGURATION_DOC.read_text(), "run: python scripts/config_table.py --write"
