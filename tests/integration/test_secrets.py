"""Run-time secrets: values read by name from SSM Parameter Store and Secrets Manager (moto in server mode on
127.0.0.1), plain IB_* values still working, and clear errors for a missing or unreadable one."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters

from shared import runtime
from shared.config import ConfigError, get_settings, load_settings
from shared.dev.local_services import MotoServer, aws_client, free_port
from shared.secrets import with_secrets
from tests.fixtures.services import unique_name


@pytest.fixture()
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """Powertools' clients go to moto; each test starts like a new container (no provider, no cache)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    parameters.DEFAULT_PROVIDERS.clear()
    yield moto_server
    parameters.DEFAULT_PROVIDERS.clear()


def put_parameter(endpoint: str, value: str) -> str:
    name = f"/image-browser/{unique_name('stage')}/secret"
    aws_client("ssm", endpoint).put_parameter(Name=name, Value=value, Type="SecureString")
    return name


def test_secrets_are_read_by_name_from_parameter_store_and_secrets_manager(aws: MotoServer) -> None:
    url_name = put_parameter(aws.endpoint, "postgresql://ib:s3cret@db.example:5432/ib")
    secret_name = unique_name("api-key")
    aws_client("secretsmanager", aws.endpoint).create_secret(Name=secret_name, SecretString="k-from-sm")
    settings = with_secrets(load_settings(database_url_parameter=url_name,
                                          api_key_parameter=f"secretsmanager:{secret_name}"))
    assert settings.database_url == "postgresql://ib:s3cret@db.example:5432/ib"
    assert settings.api_key == "k-from-sm"
    assert settings.database_url_parameter == url_name  # the name stays, for the record


def test_a_plain_value_wins_and_needs_no_aws(aws: MotoServer) -> None:
    settings = load_settings(database_url="postgresql://local/db", database_url_parameter="/no/such/parameter")
    assert with_secrets(settings).database_url == "postgresql://local/db"
    assert parameters.DEFAULT_PROVIDERS == {}  # nothing was asked of SSM


def test_rotation_reaches_a_new_container_without_any_change_to_the_function(aws: MotoServer) -> None:
    name = put_parameter(aws.endpoint, "old-key")
    assert with_secrets(load_settings(api_key_parameter=name)).api_key == "old-key"
    aws_client("ssm", aws.endpoint).put_parameter(Name=name, Value="new-key", Type="SecureString", Overwrite=True)
    parameters.DEFAULT_PROVIDERS.clear()  # a new container
    assert with_secrets(load_settings(api_key_parameter=name)).api_key == "new-key"


def test_a_missing_optional_secret_is_unset_and_logged(aws: MotoServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.secrets"):
        settings = with_secrets(load_settings(api_key_parameter="/image-browser/nowhere/api-key"))
    assert settings.api_key is None
    assert "IB_API_KEY_PARAMETER names /image-browser/nowhere/api-key, which does not exist" in caplog.text
    assert "open to anyone" in caplog.text


def test_a_missing_database_url_stops_with_the_command_that_creates_it(aws: MotoServer) -> None:
    with pytest.raises(ConfigError, match=r"IB_DATABASE_URL_PARAMETER names '/image-browser/x/database-url', "
                                          r"which does not exist: create it, e.g. `aws ssm put-parameter"):
        with_secrets(load_settings(database_url_parameter="/image-browser/x/database-url"))


def test_an_unreadable_secret_stops_with_what_to_check(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Parameter Store out of reach (as with a missing permission): the API must not fall back to "open".
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ConfigError, match=r"cannot read IB_API_KEY_PARAMETER='/image-browser/x/api-key'.*"
                                          r"ssm:GetParameter"):
        with_secrets(load_settings(api_key_parameter="/image-browser/x/api-key"))


def test_the_process_settings_read_the_secrets(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a deployed function does: only names in the environment, values from SSM at run time."""
    name = put_parameter(aws.endpoint, "postgresql://ib:rotated@db.example:5432/ib")
    monkeypatch.delenv("IB_DATABASE_URL", raising=False)
    monkeypatch.setenv("IB_DATABASE_URL_PARAMETER", name)
    runtime.reset()
    try:
        assert get_settings().database_url == "postgresql://ib:rotated@db.example:5432/ib"
    finally:
        runtime.reset()
