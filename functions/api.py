"""Lambda entry point of the search API: the FastAPI app behind Mangum.

API Gateway HTTP API (v2), REST API (v1), Lambda Function URLs and ALB events all work. The app is
built at import (cheap: no database, no model); the connection pool, storage client and model live in
the container between invocations and load on first use.
"""

from __future__ import annotations

from mangum import Mangum

from shared.api import create_app

app = create_app(serve_web=False)
handler = Mangum(app, lifespan="off")
