"""Secrets read at run time, by name: SSM Parameter Store or Secrets Manager through Powertools parameters.

A deployed function gets the *name* of each secret (`IB_DATABASE_URL_PARAMETER=/image-browser/dev/database-url`),
never its value, so nothing secret sits in the function's configuration or the packaged template, and a
rotated value reaches every new container without a deploy. A name is an SSM parameter (SecureStrings are
decrypted), or `secretsmanager:<name or ARN>` for Secrets Manager. A process reads them once, with its
settings (`shared.config.get_settings`); Powertools keeps each value `SECRET_MAX_AGE_SECONDS`, so settings
built again meanwhile ask SSM nothing.

Locally nothing changes: a plain `IB_DATABASE_URL` (or any other secret setting) is used as it is, and wins
over a name given beside it.
"""

from __future__ import annotations

import logging

from shared.config import ConfigError, Settings

log = logging.getLogger(__name__)

# Setting -> what happens without it, for the log line when its parameter does not exist.
SECRETS = {
    "database_url": "",  # required: a missing parameter stops the function
    "api_key": "the API is open to anyone",
    "replicate_api_token": "replicate: models cannot be used",
    "cloudflare_api_token": "r2_pull cannot pull the Cloudflare Queue",
    "s3_access_key_id": "storage requests are signed with the function's role",
    "s3_secret_access_key": "storage requests are signed with the function's role",
}
SECRETS_MANAGER_PREFIX = "secretsmanager:"
SECRET_MAX_AGE_SECONDS = 300
NOT_FOUND_CODES = ("ParameterNotFound", "ResourceNotFoundException")


def with_secrets(settings: Settings) -> Settings:
    """`settings` with each secret named by an `IB_*_PARAMETER` setting read from SSM / Secrets Manager."""
    values: dict[str, str | None] = {}
    for field in SECRETS:
        name = getattr(settings, f"{field}_parameter")
        if name and not getattr(settings, field):
            values[field] = read_secret(field, name)
    return settings.model_copy(update=values) if values else settings


def read_secret(field: str, name: str) -> str | None:
    """The secret's value; None (logged) when an optional one does not exist. ConfigError names the variable."""
    from aws_lambda_powertools.utilities.parameters import GetParameterError, get_parameter, get_secret

    variable = f"IB_{field.upper()}_PARAMETER"
    try:
        if name.startswith(SECRETS_MANAGER_PREFIX) or name.startswith("arn:aws:secretsmanager:"):
            value = get_secret(name.removeprefix(SECRETS_MANAGER_PREFIX), max_age=SECRET_MAX_AGE_SECONDS)
        else:
            value = get_parameter(name, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS)
    except GetParameterError as exc:
        if not any(code in str(exc) for code in NOT_FOUND_CODES):
            raise ConfigError(
                f"cannot read {variable}={name!r}: {exc}. Check that the function's role may read it "
                "(ssm:GetParameter, or secretsmanager:GetSecretValue) and that it is in this region"
            ) from None
        if not SECRETS[field]:
            raise ConfigError(
                f"{variable} names {name!r}, which does not exist: create it, e.g. `aws ssm put-parameter "
                f"--type SecureString --name {name} --value ...` (docs/deploy-aws.md)"
            ) from None
        log.warning("%s names %s, which does not exist: %s", variable, name, SECRETS[field])
        return None
    return value if isinstance(value, str) else value.decode() if isinstance(value, bytes) else str(value)
