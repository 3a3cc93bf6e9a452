"""The API's routes, one router per area, all under /api."""

from fastapi import APIRouter

from shared.api.routes import browse, search, status

api_router = APIRouter(prefix="/api")
api_router.include_router(search.router)
api_router.include_router(browse.router)
api_router.include_router(status.router)
