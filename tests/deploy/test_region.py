"""The stack's region follows AWS_REGION (or --region), so the stack, its SSM secrets, a self-built image's
ECR repository and an existing bucket's EventBridge rule all land in the region the guide exports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared.dev.local_services import MotoServer
from tests.deploy.conftest import IMAGE_URI, REGION
from tests.deploy.packaging import osls_env, run_osls

REGION_NAME = re.compile(r"\b(?:us|eu|ap|sa|ca|me|af|il|mx)-(?:gov-)?[a-z]+-\d\b")
ARN = re.compile(r"arn:([^:\s\"]*):([^:\s\"]*):([^:\s\"]*):")
AWS_HOST = re.compile(r"\.([a-z0-9-]+)\.amazonaws\.com")
PSEUDO_REGION = "${AWS::Region}"
# Pseudo parameters hold colons: spelled as plain words first, so an ARN's fields split on ':'.
PSEUDO = {"${AWS::Partition}": "aws", "${AWS::AccountId}": "123456789012", "${AWS::URLSuffix}": "amazonaws.com",
          PSEUDO_REGION: "pseudo-region"}


def strings(node: Any) -> Iterator[str]:
    """Every string in a template value (Fn::Sub templates included), pseudo parameters spelled out."""
    if isinstance(node, str):
        for pseudo, word in PSEUDO.items():
            node = node.replace(pseudo, word)
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_the_stack_lands_in_aws_region(eu_template: dict[str, Any]) -> None:
    state = eu_template["__state__"]["service"]["provider"]
    assert state["region"] == REGION  # where osls deploys the stack: AWS_REGION, not us-east-1


def test_every_region_bearing_arn_and_uri_uses_that_region(eu_template: dict[str, Any]) -> None:
    template = {name: value for name, value in eu_template.items() if name != "__state__"}
    texts = list(strings(template))
    named = {region for text in texts for region in REGION_NAME.findall(text)}
    assert named == {REGION}, f"regions named in the template: {named}"
    arns = [match for text in texts for match in ARN.findall(text)]
    assert len(arns) >= 10  # the roles' log, SSM and S3 resources, the bucket policy, …
    for _partition, service, region in arns:
        assert region in {"", REGION, "pseudo-region"}, (service, region)
    hosts = {host for text in texts for host in AWS_HOST.findall(text)}
    assert hosts and hosts <= {REGION, "pseudo-region"}, hosts
    # The image must come from the stack's region (Lambda requires it); osls passes it through unchanged.
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert {f["Properties"]["Code"]["ImageUri"] for f in functions} == {IMAGE_URI}
    # Secrets are read in the functions' own region: each SSM ARN names the stack's region.
    ssm = [text for text in texts if ":ssm:" in text]
    assert ssm and all(":ssm:pseudo-region:" in text for text in ssm)


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (["--region", "ap-southeast-2"], {"AWS_REGION": REGION}, "ap-southeast-2"),  # --region wins
        ([], {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": "us-west-2"}, REGION),  # then AWS_REGION
        ([], {"AWS_DEFAULT_REGION": "eu-north-1"}, "eu-north-1"),  # then AWS_DEFAULT_REGION
        ([], {}, "us-east-1"),  # then the default
    ],
)
def test_which_region_wins(moto_server: MotoServer, option: list[str], env: dict[str, str], expected: str) -> None:
    """The order docs/deploy-aws.md ("Region: which one wins") gives."""
    resolved = run_osls(["print", "--stage", "ci", "--path", "provider.region", *option],
                        osls_env(moto_server.endpoint, **env))
    assert resolved.strip().splitlines()[-1] == expected


def test_roles_are_stack_outputs(eu_template: dict[str, Any]) -> None:
    """The KMS key-policy step names the roles CloudFormation generates: the stack outputs their ARNs."""
    outputs = eu_template["Outputs"]
    for output, role in {"EmbedRoleArn": "EmbedRole", "ApiRoleArn": "ApiRole", "R2PullRoleArn": "R2PullRole"}.items():
        assert outputs[output]["Value"] == {"Fn::GetAtt": [role, "Arn"]}
        assert eu_template["Resources"][role]["Type"] == "AWS::IAM::Role"
    assert outputs["BucketEventsRuleName"]["Value"] == {"Ref": "PhotosBucketEventsRule"}
