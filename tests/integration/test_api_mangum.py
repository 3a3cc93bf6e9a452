"""The Lambda handler (`functions/api.py`, Mangum) with real API Gateway HTTP API (v2), Lambda
Function URL and REST API (v1) payloads, configured from IB_* variables as in a deployed function."""

from __future__ import annotations

import base64
import importlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared import runtime
from shared.embedders import load
from shared.events import ObjectEvent
from shared.store.catalog import Catalog
from tests.fixtures.model import synthetic_photo
from tests.fixtures.services import unique_name

CONTEXT = SimpleNamespace(
    function_name="image-browser-api", aws_request_id="req-1", invoked_function_arn="arn:aws:lambda:x",
    get_remaining_time_in_millis=lambda: 29_000,
)


@pytest.fixture(scope="module")
def handler(pg_url: str, model_dir: Path) -> Iterator[Any]:
    bucket = unique_name("lambda")
    env = {
        "IB_DATABASE_URL": pg_url, "IB_BUCKET": bucket, "IB_MODEL": str(model_dir),
        "IB_S3_ENDPOINT_URL": "http://127.0.0.1:9", "IB_S3_ACCESS_KEY_ID": "test",
        "IB_S3_SECRET_ACCESS_KEY": "test",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        runtime.reset()
        catalog = Catalog.from_url(pg_url)
        embedder = load(str(model_dir), runtime.get_settings())
        coll = catalog.ensure_collection(bucket, embedder.model_id, embedder.dim)
        images = [synthetic_photo(64, 48, seed=40 + i) for i in range(6)]
        for i, vector in enumerate(embedder.embed_images(images)):
            catalog.record_event(coll, ObjectEvent(bucket, f"img/{i}.jpg", "created", etag=f"e{i}", size=10))
            catalog.store_embedding(coll, f"img/{i}.jpg", f"e{i}", vector, model_id=embedder.model_id,
                                    width=64, height=48)
        import functions.api

        module = importlib.reload(functions.api)  # built from this environment
        yield module.handler
        catalog.db.close()
        runtime.catalog().db.close()
    runtime.reset()


def http_api_v2(method: str, path: str, query: str = "", *, body: bytes | None = None,
                headers: dict[str, str] | None = None, function_url: bool = False) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event; a Function URL event has the same shape."""
    domain = "abcdefgh.lambda-url.us-east-1.on.aws" if function_url else "a1b2c3.execute-api.us-east-1.amazonaws.com"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": domain, "user-agent": "curl/8.5", "accept": "application/json",
                    "x-forwarded-proto": "https", "x-forwarded-port": "443", **(headers or {})},
        "requestContext": {
            "accountId": "anonymous" if function_url else "123456789012",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9",
                     "userAgent": "curl/8.5"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2025:19:03:58 +0000",
            "timeEpoch": 1741806238000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(part.split("=", 1) for part in query.split("&"))
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event


def rest_api_v1(method: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    headers = {"Host": "a1b2c3.execute-api.us-east-1.amazonaws.com", "Accept": "application/json"}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": params,
        "multiValueQueryStringParameters": {name: [value] for name, value in params.items()},
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123", "resourcePath": "/{proxy+}", "httpMethod": method,
            "path": f"/prod{path}", "stage": "prod", "requestId": "f4f5c1a2", "accountId": "123456789012",
            "apiId": "a1b2c3", "protocol": "HTTP/1.1", "requestTimeEpoch": 1741806238000,
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "curl/8.5"},
            "domainName": "a1b2c3.execute-api.us-east-1.amazonaws.com",
        },
        "body": None,
        "isBase64Encoded": False,
    }


def json_body(response: dict[str, Any]) -> Any:
    body = response["body"]
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return json.loads(body)


def test_http_api_v2_text_search(handler: Any, model_dir: Path) -> None:
    response = handler(http_api_v2("GET", "/api/search", "q=a%20cat&limit=3"), CONTEXT)
    assert response["statusCode"] == 200
    body = json_body(response)
    assert len(body["items"]) == 3 and body["model"] == load(str(model_dir)).model_id
    assert response["headers"]["content-type"] == "application/json"


def test_function_url_recent_and_errors(handler: Any) -> None:
    recent = handler(http_api_v2("GET", "/api/recent", "limit=4", function_url=True), CONTEXT)
    assert recent["statusCode"] == 200 and len(json_body(recent)["items"]) == 4
    bad = handler(http_api_v2("GET", "/api/recent", "limit=0", function_url=True), CONTEXT)
    assert bad["statusCode"] == 400 and json_body(bad)["error"]["code"] == "bad_parameter"


def test_rest_api_v1_similar(handler: Any) -> None:
    response = handler(rest_api_v1("GET", "/api/similar", {"key": "img/2.jpg", "limit": "3"}), CONTEXT)
    assert response["statusCode"] == 200
    keys = [item["key"] for item in json_body(response)["items"]]
    assert len(keys) == 3 and "img/2.jpg" not in keys


def multipart_upload(query: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    """A POST /api/search/image event: the image behind img/3.jpg as form field `file`, after `fields`."""
    buffer = io.BytesIO()
    synthetic_photo(64, 48, seed=43).save(buffer, "JPEG", quality=95)
    boundary = "----ib-boundary-7MA4YWxkTrZu0gW"
    body = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                   for name, value in (fields or {}).items()).encode()
    body += (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    return http_api_v2("POST", "/api/search/image", query, body=body,
                       headers={"content-type": f"multipart/form-data; boundary={boundary}",
                                "content-length": str(len(body))})


def test_base64_multipart_upload(handler: Any) -> None:
    response = handler(multipart_upload("limit=2"), CONTEXT)
    assert response["statusCode"] == 200, response["body"]
    assert json_body(response)["items"][0]["key"] == "img/3.jpg"
    not_image = http_api_v2("POST", "/api/search/image", body=b"plain text", headers={"content-type": "image/png"})
    assert handler(not_image, CONTEXT)["statusCode"] == 415


def test_health_through_lambda(handler: Any) -> None:
    body = json_body(handler(http_api_v2("GET", "/api/health"), CONTEXT))
    assert body["status"] == "ok" and body["database"] is True and body["test_model"] is True


# ---- search you can steer (issue 13), through the Lambda handler ------------------------------------------


def test_http_api_v2_hybrid_ranks_a_named_image_first_and_echoes_the_terms(handler: Any) -> None:
    # The test model's vectors mean nothing: "3" finds img/3.jpg by its name.
    body = json_body(handler(http_api_v2("GET", "/api/search", "q=3&limit=4"), CONTEXT))
    assert body["items"][0]["key"] == "img/3.jpg" and "name" in body["items"][0]["matched"]
    assert body["query"] == {"terms": [{"kind": "text", "value": "3", "weight": 1.0}]}
    assert body["mode"] == "hybrid" and body["sort"] == "relevance" and body["cutoff"] == "auto"
    assert isinstance(body["hidden"], int)


def test_rest_api_v1_keyword_mode_sort_and_bad_options(handler: Any) -> None:
    words = json_body(handler(rest_api_v1("GET", "/api/search", {"q": "img 4", "mode": "keyword"}), CONTEXT))
    assert [item["key"] for item in words["items"]] == ["img/4.jpg"] and words["items"][0]["score"] is None
    newest = json_body(handler(rest_api_v1("GET", "/api/search", {"q": "img", "mode": "keyword", "sort": "oldest"}),
                               CONTEXT))
    assert [item["key"] for item in newest["items"]] == [f"img/{i}.jpg" for i in range(6)]  # recorded in this order
    for params in ({"q": "cat", "mode": "pictures"}, {"q": "2x:cat"}, {"q": "cat - cat"}):
        response = handler(rest_api_v1("GET", "/api/search", params), CONTEXT)
        assert response["statusCode"] == 400 and json_body(response)["error"]["code"] == "bad_parameter"
    similar = json_body(handler(rest_api_v1("GET", "/api/similar", {"key": "img/2.jpg"}), CONTEXT))
    term = json_body(handler(rest_api_v1("GET", "/api/search", {"q": "similar:img/2.jpg"}), CONTEXT))
    assert [(item["key"], item["score"]) for item in similar["items"]] == \
        [(item["key"], item["score"]) for item in term["items"]]
    unknown = handler(rest_api_v1("GET", "/api/search", {"q": "similar:img/9.jpg"}), CONTEXT)
    assert unknown["statusCode"] == 404 and "img/9.jpg" in json_body(unknown)["error"]["message"]


def test_base64_multipart_upload_with_terms(handler: Any) -> None:
    response = handler(multipart_upload("limit=6&cutoff=none", {"q": "- similar:img/3.jpg + sunset"}), CONTEXT)
    assert response["statusCode"] == 200, response["body"]
    answer = json_body(response)
    assert answer["query"]["terms"] == [{"kind": "image", "value": "q.jpg", "weight": 1.0},
                                        {"kind": "image", "value": "img/3.jpg", "weight": -1.0},
                                        {"kind": "text", "value": "sunset", "weight": 1.0}]
    assert "img/3.jpg" not in [item["key"] for item in answer["items"]]  # an image term is never a result
