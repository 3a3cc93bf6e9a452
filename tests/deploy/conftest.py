from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.dev.local_services import MotoServer
from tests.deploy.packaging import osls_env, package

REGION = "eu-west-1"
IMAGE_URI = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/image-browser@sha256:" + "cd" * 32


@pytest.fixture(scope="session")
def eu_template(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack packaged as the guide deploys it outside us-east-1: `export AWS_REGION=eu-west-1`, no
    --region (AWS_DEFAULT_REGION set elsewhere, as a laptop's profile might, to show AWS_REGION wins)."""
    env = osls_env(moto_server.endpoint, AWS_REGION=REGION, AWS_DEFAULT_REGION="us-west-2")
    yield package(tmp_path_factory.mktemp("osls-eu"), IMAGE_URI, env)
