"""Which bucket events reach the embed function, written once for the deployment and the local poller.

Our own thumbnail writes land in the watched bucket and send object events like any upload. They are
dropped in two places, each using only the operators its service documents:

1. The bucket sends its events to EventBridge, and one rule on the default bus forwards the bucket's
   `Object Created` / `Object Deleted` events to the ingest queue, except keys under the thumbnail prefix
   (`bucket_rule_pattern`: `anything-but` with `prefix`, an event-bus operator).
2. The embed function's SQS trigger (Lambda `FilterCriteria`, `trigger_filter`) keeps only S3 object
   events: EventBridge-shaped bodies from that rule, or S3 notifications should someone wire a bucket to
   the queue directly. Lambda's event source mappings document only exact values, `prefix`, `suffix`,
   `equals-ignore-case`, `anything-but` with a list of values, `numeric` and `exists`, so this filter
   cannot exclude a prefix; it needs not to, as the rule already did. A body that is not JSON and the
   `s3:TestEvent` match neither pattern.

serverless.yml writes both (tests/deploy/test_deploy.py and tests/deploy/ compare them with this module). Locally,
moto sends S3 notifications straight to the queue, so the local SQS poller applies `thumbnail_filter`: the
trigger's patterns with the rule's key condition added, one pattern per body shape. `make dev` and
`make bench` then see what Lambda sees.
"""

from __future__ import annotations

import json
from typing import Any

Pattern = dict[str, Any]

# EventBridge's detail-types for S3 object events (S3 "Using EventBridge").
OBJECT_EVENT_TYPES = ["Object Created", "Object Deleted"]
# The backfill's and the model move's own work messages on the same queue (shared/ingest/work.py).
WORK_MESSAGES: Pattern = {"body": {"image_browser": {"job": ["embed", "reembed", "fill"]}}}


def not_thumbnail(thumbnail_prefix: str) -> list[Pattern]:
    """The key condition of the bucket rule: any key outside the thumbnail prefix (event-bus operator)."""
    return [{"anything-but": {"prefix": thumbnail_prefix}}]


def bucket_rule_pattern(bucket: Any, thumbnail_prefix: str) -> Pattern:
    """The EventBridge rule's pattern: the bucket's object events, thumbnails excluded."""
    return {
        "source": ["aws.s3"],
        "detail-type": list(OBJECT_EVENT_TYPES),
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": not_thumbnail(thumbnail_prefix)}},
    }


def trigger_filter() -> list[Pattern]:
    """The embed trigger's Lambda filter patterns: S3 object events of either body shape, nothing else."""
    return [
        {"body": {"Records": {"eventSource": ["aws:s3"]}}},  # S3 -> SQS
        {"body": {"source": ["aws.s3"], "detail-type": list(OBJECT_EVENT_TYPES)}},  # S3 -> EventBridge -> SQS
        WORK_MESSAGES,
    ]


def thumbnail_filter(thumbnail_prefix: str) -> list[Pattern]:
    """What the deployment lets through, for the local poller: the trigger's patterns AND the rule's key
    condition, on the key field of each body shape."""
    s3_shape, eventbridge_shape, work = trigger_filter()
    key = not_thumbnail(thumbnail_prefix)
    s3_shape["body"]["Records"]["s3"] = {"object": {"key": key}}
    eventbridge_shape["body"]["detail"] = {"object": {"key": key}}
    return [s3_shape, eventbridge_shape, work]


def passes(patterns: list[Pattern], body: str) -> bool:
    """Whether an SQS message with this body gets through (any pattern matches)."""
    try:
        document: dict[str, Any] = {"body": json.loads(body)}
    except ValueError:
        document = {"body": body}  # a pattern on the body's fields cannot match plain text
    return any(_matches(pattern, document) for pattern in patterns)


def _field(node: Any, name: str) -> list[Any]:
    """The values under `name`, arrays flattened (a pattern matches if any element matches)."""
    values: list[Any] = []
    for item in node if isinstance(node, list) else [node]:
        if isinstance(item, dict) and name in item:
            value = item[name]
            values.extend(value if isinstance(value, list) else [value])
    return values


def _matches(pattern: Pattern, node: Any) -> bool:
    for name, expected in pattern.items():
        values = _field(node, name)
        if isinstance(expected, dict):
            if not any(_matches(expected, value) for value in values):
                return False
        elif not any(_rule_matches(rule, values) for rule in expected):
            return False
    return True


def _rule_matches(rule: Any, values: list[Any]) -> bool:
    if isinstance(rule, dict) and "exists" in rule:
        return bool(values) == bool(rule["exists"])
    return any(_value_matches(rule, value) for value in values)


def _value_matches(rule: Any, value: Any) -> bool:
    if not isinstance(rule, dict):
        return bool(rule == value)
    ((operator, argument),) = rule.items()
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.casefold() == argument.casefold()
    if operator == "anything-but":
        if isinstance(argument, dict):
            return isinstance(value, str) and not _value_matches(argument, value)
        return value not in (argument if isinstance(argument, list) else [argument])
    raise ValueError(f"filter operator {operator!r} is not supported by the local filter")
