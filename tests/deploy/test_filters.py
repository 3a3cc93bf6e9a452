"""Every filter pattern in serverless.yml uses only operators its service documents, and the local SQS
poller applies exactly what the deployment applies (shared/ingest/event_filter.py is the one source).

Lambda's event source mapping filters (SQS, Kinesis, DynamoDB) document: exact values, `prefix`, `suffix`,
`equals-ignore-case`, `anything-but` with a list of values, `numeric` and `exists`. `anything-but` with
`prefix`/`suffix`/`equals-ignore-case`/`wildcard` is an EventBridge event-bus operator ("Pipes support: No"
in EventBridge's operator table): a trigger filter using it may be refused, failing the whole deploy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.ingest.event_filter import bucket_rule_pattern, not_thumbnail, passes, thumbnail_filter, trigger_filter

ROOT = Path(__file__).resolve().parents[2]
Scalar = (str, int, float, bool, type(None))


class _TaggedLoader(yaml.SafeLoader):
    """Reads serverless.yml's CloudFormation tags (!Ref, !If, …) as {"!Tag": value}."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


_TaggedLoader.add_multi_constructor("!", _tagged)


def serverless_config() -> dict[str, Any]:
    return yaml.load((ROOT / "serverless.yml").read_text(), Loader=_TaggedLoader)


def leaves(pattern: dict[str, Any]) -> Iterator[list[Any]]:
    """The rule lists of a pattern (a leaf is a list; a nested object is a field)."""
    for value in pattern.values():
        if isinstance(value, dict):
            yield from leaves(value)
        else:
            assert isinstance(value, list), f"a pattern's leaf must be a list of rules: {value!r}"
            yield value


def lambda_refusals(pattern: dict[str, Any]) -> list[str]:
    """Rules outside the operators Lambda documents for event source mapping filters."""
    refused = []
    for rules in leaves(pattern):
        for rule in rules:
            if isinstance(rule, Scalar):
                continue  # exact value
            ((operator, argument),) = rule.items() if isinstance(rule, dict) and len(rule) == 1 else [("?", rule)]
            valid = {
                "prefix": isinstance(argument, str),
                "suffix": isinstance(argument, str),
                "equals-ignore-case": isinstance(argument, str),
                "anything-but": isinstance(argument, list) and all(isinstance(a, Scalar) for a in argument),
                "numeric": isinstance(argument, list),
                "exists": isinstance(argument, bool),
            }.get(operator, False)
            if not valid:
                refused.append(json.dumps(rule))
    return refused


def event_bus_refusals(pattern: dict[str, Any]) -> list[str]:
    """Rules outside EventBridge's event-bus operators (a CloudFormation !Ref, !If or !Sub counts as a value)."""
    refused = []
    for rules in leaves(pattern):
        for rule in rules:
            if isinstance(rule, Scalar) or (isinstance(rule, dict) and set(rule) <= {"Ref", "If", "Sub"}):
                continue
            ((operator, argument),) = rule.items()
            if operator == "anything-but" and isinstance(argument, dict):
                (inner,) = argument
                if inner not in {"prefix", "suffix", "equals-ignore-case", "wildcard"}:
                    refused.append(json.dumps(rule))
            elif operator not in {"anything-but", "prefix", "suffix", "equals-ignore-case", "wildcard", "numeric",
                                  "exists", "cidr"}:
                refused.append(json.dumps(rule))
    return refused


def sqs_filter_patterns(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [pattern for function in config["functions"].values() for event in function.get("events", [])
            for pattern in (event.get("sqs") or {}).get("filterPatterns", [])]


def test_the_operator_checks_refuse_what_lambda_refuses() -> None:
    """The check itself: the pattern of the earlier trigger (anything-but + prefix) is refused."""
    earlier = {"body": {"Records": {"s3": {"object": {"key": [{"anything-but": {"prefix": ".thumbnails/"}}]}}}}}
    assert lambda_refusals(earlier) == ['{"anything-but": {"prefix": ".thumbnails/"}}']
    assert lambda_refusals({"body": {"a": [{"wildcard": "*.jpg"}], "b": [{"anything-but": "x"}]}}) == [
        '{"wildcard": "*.jpg"}', '{"anything-but": "x"}']
    assert lambda_refusals({"body": {"a": ["x", {"prefix": "p"}, {"exists": True}, {"numeric": [">", 1]}]}}) == []
    assert event_bus_refusals(earlier) == []
    assert event_bus_refusals({"a": [{"anything-but": {"nope": 1}}]}) == ['{"anything-but": {"nope": 1}}']


def test_every_sqs_trigger_filter_uses_only_lambda_operators() -> None:
    patterns = sqs_filter_patterns(serverless_config())
    assert patterns, "the embed trigger has filter patterns"
    for pattern in patterns:
        assert lambda_refusals(pattern) == [], pattern
    assert patterns == trigger_filter()  # the module the local poller uses
    for pattern in trigger_filter():
        assert lambda_refusals(pattern) == []


def test_the_bucket_rule_uses_event_bus_operators_and_drops_thumbnails() -> None:
    rule = serverless_config()["resources"]["Resources"]["PhotosBucketEventsRule"]
    pattern = rule["Properties"]["EventPattern"]
    assert event_bus_refusals(pattern) == []
    assert pattern["detail"]["object"]["key"] == not_thumbnail({"Ref": "ThumbnailPrefix"})
    expected = bucket_rule_pattern("photos", ".thumbnails/")
    assert pattern["source"] == expected["source"] and pattern["detail-type"] == expected["detail-type"]
    # The stack's own bucket sends its events to EventBridge, so this rule covers it too.
    bucket = serverless_config()["resources"]["Resources"]["PhotosBucket"]["Properties"]
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def eventbridge_event(key: str, detail_type: str = "Object Created") -> dict[str, Any]:
    return {"source": "aws.s3", "detail-type": detail_type,
            "detail": {"bucket": {"name": "photos"}, "object": {"key": key}}}


def s3_notification(key: str) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": key}}}]}


KEYS = ["holiday/IMG_1.jpg", ".thumbnails/holiday/IMG_1.jpg.webp", ".thumbnails-old/a.jpg", "holiday/.thumbnails/a",
        ".thumbnails", "caf%C3%A9/a+b.jpg"]


@pytest.mark.parametrize("key", KEYS)
def test_the_local_poller_applies_exactly_the_deployed_filters(key: str) -> None:
    """What reaches embed when deployed (the bucket rule, then the trigger) is what the local poller lets
    through (thumbnail_filter), for both body shapes moto and EventBridge send."""
    prefix = ".thumbnails/"
    rule = bucket_rule_pattern("photos", prefix)
    event = eventbridge_event(key)
    through_rule = passes([{"body": rule}], json.dumps(event))
    deployed = through_rule and passes(trigger_filter(), json.dumps(event))
    assert passes(thumbnail_filter(prefix), json.dumps(event)) == deployed
    # moto's S3 notification stands for the same event: the same answer.
    assert passes(thumbnail_filter(prefix), json.dumps(s3_notification(key))) == deployed
    assert deployed == (not key.startswith(prefix))


def test_the_trigger_drops_what_is_no_object_event() -> None:
    for body in ('{"Service": "Amazon S3", "Event": "s3:TestEvent"}', "not json",
                 json.dumps({"source": "aws.s3", "detail-type": "Object Restore Completed", "detail": {}})):
        assert not passes(trigger_filter(), body)
        assert not passes(thumbnail_filter(".thumbnails/"), body)
    assert passes(trigger_filter(), json.dumps(eventbridge_event("a.jpg", "Object Deleted")))


def test_the_local_stack_and_benchmarks_apply_the_module() -> None:
    """make dev and make bench hand their poller thumbnail_filter, as the deployment's stand-in."""
    for path in ("shared/dev/stack.py", "bench/bench_ingest.py", "bench/bench_ocr.py"):
        assert "filter_patterns=thumbnail_filter(" in (ROOT / path).read_text(), path
