"""The search API: FastAPI app served by uvicorn locally and by Mangum in Lambda (`functions/api.py`).

Routes (JSON; every one takes `collection`, default IB_BUCKET):
  GET  /api/search?q=&limit=&min_score=&prefix=&after=&before=&type=&cursor=   text (or `similar:<key>`)
  GET  /api/similar?key=&limit=&min_score=&cursor=                             like a stored image
  POST /api/search/image                                                       like an uploaded image
  GET  /api/recent?limit=&cursor=                                              newest first, keyset paging
  GET  /api/images/{collection}/{key}?thumbnail=1                              redirect to the object
  GET  /api/collections, /api/stats, /api/health

The package: `app.py` builds the app (`create_app`, CORS, the gallery's static files); `routes/` holds
one router per area (search, browse, status); `deps.py` the dependencies (services, API key, shared
query parameters); `schemas.py` the answers' models; `responses.py` the hot routes' JSON writer;
`errors.py` the exception -> answer table; `cursors.py` the page cursors; `services.py` what the routes
use, created on first use.

`create_app()` does no I/O: the database pool, storage and model come from `shared.runtime` on first
use (a Lambda container keeps them between invocations), and the text tower loads on the first text
query only.
"""

from shared.api.app import create_app
from shared.api.deps import MAX_LIMIT
from shared.api.errors import ApiError
from shared.search.service import QueryCache

__all__ = ["MAX_LIMIT", "ApiError", "QueryCache", "create_app"]
