"""Which queue messages reach the embed function: the filter on its SQS trigger (Lambda `FilterCriteria`).

Our own thumbnail writes land in the watched bucket and send object events like any upload; S3's
notification filters can only include by prefix or suffix, so the trigger drops them instead, before any
invocation. One pattern per message shape the queue receives: S3 notifications (`Records[].s3.object.key`)
and EventBridge events (`detail.object.key`). Lambda keeps a message when any pattern matches and deletes
the rest; a body that is not JSON (or the `s3:TestEvent`) matches neither.

serverless.yml writes the same patterns (tests/deploy/test_deploy.py compares them with `thumbnail_filter`), and
the local SQS poller applies them with `passes`, so `make dev` and `make bench` see what Lambda sees.
Only the pattern syntax these filters use is implemented: exact values, `prefix`, `anything-but`, `exists`.
"""

from __future__ import annotations

import json
from typing import Any

Pattern = dict[str, Any]


def thumbnail_filter(thumbnail_prefix: str) -> list[Pattern]:
    """Lambda filter patterns that let every object event through except those of our thumbnails."""
    not_thumbnail = [{"anything-but": {"prefix": thumbnail_prefix}}]
    return [
        {"body": {"Records": {"s3": {"object": {"key": not_thumbnail}}}}},  # S3 -> SQS
        {"body": {"detail": {"object": {"key": not_thumbnail}}}},  # EventBridge -> SQS
    ]


def passes(patterns: list[Pattern], body: str) -> bool:
    """Whether Lambda hands an SQS message with this body to the function (any pattern matches)."""
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
    if operator == "anything-but":
        if isinstance(argument, dict):
            return isinstance(value, str) and not _value_matches(argument, value)
        return value not in (argument if isinstance(argument, list) else [argument])
    raise ValueError(f"filter operator {operator!r} is not supported by the local filter")
