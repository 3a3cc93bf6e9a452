"""The API's routes, one router per area, all under /api. Every route's query and path parameters pass
`check_request` first (shared/api/validation.py), whatever the route declares."""

from fastapi import APIRouter, Depends

from shared.api.routes import browse, discover, duplicates, people, places, saved_searches, search, status
from shared.api.validation import check_request

api_router = APIRouter(prefix="/api", dependencies=[Depends(check_request)])
api_router.include_router(search.router)
api_router.include_router(browse.router)
api_router.include_router(status.router)
api_router.include_router(duplicates.router)
api_router.include_router(places.router)
api_router.include_router(people.router)
api_router.include_router(saved_searches.router)
api_router.include_router(discover.router)
