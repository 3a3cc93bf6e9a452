"""The JSON answer of a hot route, written at once."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def json_answer(answer: BaseModel) -> Response:
    """`answer` as the route's JSON, as FastAPI would write it. A sync route that returns the model itself has FastAPI
    check it against the response model in a second trip to the thread pool, then encode it: ~0.5 CPU ms of the
    ~4.5 an /api/similar answer cost at 100,000 rows. The route names its response model for /docs."""
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")
