"""Faces function: find the faces in embedded pictures and group them into people, an SQS consumer of the
faces queue (functions/stage_consumer.py says how a stage consumes its queue)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from functions.stage_consumer import StageConsumer
from shared import runtime

logger = Logger(service="image-browser-faces")
consumer = StageConsumer("faces", runtime.faces_stage, logger)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    return consumer.handle(event, context)
