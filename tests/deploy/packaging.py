"""`osls package` of the real serverless.yml in a chosen region, offline: every AWS call osls makes goes to
the session's moto server, so nothing leaves 127.0.0.1. Shared by the tests of this folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
OSLS = INFRA / "node_modules" / ".bin" / "osls"
STAGE = "ci"


def osls() -> Path:
    """infra/node_modules from the lockfile (make does this first; a bare pytest run does it here)."""
    if OSLS.exists():
        return OSLS
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the osls packaging checks need Node.js and npm")
    subprocess.run([npm, "ci", "--prefix", str(INFRA), "--no-audit", "--no-fund"], check=True, timeout=600)
    return OSLS


def osls_env(endpoint: str, **region: str) -> dict[str, str]:
    """Dummy credentials, every call to moto, and exactly the region variables given (none inherited)."""
    env = {name: value for name, value in os.environ.items()
           if name not in {"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"}}
    return env | {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": endpoint} | region


def run_osls(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([str(osls()), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"osls {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def package(out: Path, image_uri: str, env: dict[str, str]) -> dict[str, Any]:
    """The packaged CloudFormation template, plus osls's own record of the stack (`__state__`)."""
    run_osls(["package", "--stage", STAGE, "--package", str(out), f"--param=image={image_uri}"], env)
    template = json.loads((out / "cloudformation-template-update-stack.json").read_text())
    state = json.loads((out / "serverless-state.json").read_text())
    return template | {"__state__": state}
