"""One check of every value a request carries, before any route sees it.

PostgreSQL refuses some values outright (NUL in text, integers beyond bigint) and a float may be NaN
or infinite; such a value must be refused at the edge as a 400 naming the parameter, never reach the
database as a 500. `check_request` runs as a dependency of the whole /api router, so a parameter a
route adds later is checked without doing anything: every query and path parameter is text PostgreSQL
can store, integer parameters fit bigint, float parameters are finite, keys fit S3's 1,024 bytes and
collection names follow the catalog's rule. A route that reads a form calls `check_form` on it.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from fastapi import Request
from fastapi.routing import APIRoute

from shared.api.errors import ApiError
from shared.events import key_problem
from shared.store.catalog import CatalogError, validate_collection_name
from shared.store.db import BIGINT_MAX, BIGINT_MIN, fits_bigint, text_problem

Kind = Literal["text", "int", "float"]
KEY_PARAMETERS = frozenset({"key", "prefix"})  # object keys (or the start of one): S3's limits apply
COLLECTION_PARAMETERS = frozenset({"collection"})


def bad_parameter(name: str, problem: str, where: str = "parameter") -> ApiError:
    return ApiError(400, "bad_parameter", f"{where} {name!r} {problem}")


async def check_request(request: Request) -> None:
    """The /api router's first dependency: 400 naming the first query or path parameter that is refused."""
    route = request.scope.get("route")
    kinds = parameter_kinds(route) if isinstance(route, APIRoute) else {}
    for name, value in [*request.query_params.multi_items(), *request.path_params.items()]:
        check_value(name, str(value), kinds.get(name, "text"))


def check_form(fields: Iterable[tuple[str, Any]]) -> None:
    """The same rule for a form's text fields (file parts are the route's to judge)."""
    for name, value in fields:
        if isinstance(value, str):
            check_value(name, value, "text", where="form field")


def check_value(name: str, value: str, kind: Kind, where: str = "parameter") -> None:
    name_problem = text_problem(name)
    if name_problem:
        raise ApiError(400, "bad_parameter", f"a {where} name {name_problem}: remove that {where} and retry")
    problem = key_problem(value) if name in KEY_PARAMETERS else text_problem(value)
    if problem:
        raise bad_parameter(name, f"{problem}: fix the value and retry", where)
    if name in COLLECTION_PARAMETERS:
        try:
            validate_collection_name(value)
        except CatalogError as exc:
            raise bad_parameter(name, f"is refused: {exc}", where) from None
    if kind == "int" and _beyond_bigint(value):
        raise bad_parameter(name, f"is out of range: whole numbers from {BIGINT_MIN:,} to {BIGINT_MAX:,}", where)
    if kind == "float" and not _finite_or_not_a_number(value):
        raise bad_parameter(name, f"must be a finite number, got {value!r}", where)


def _beyond_bigint(value: str) -> bool:
    """A whole number too large for PostgreSQL's bigint; anything that is not a number is the route's
    own validation to refuse."""
    text = value.strip().replace("_", "")
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        return False
    return len(digits) > 20 or not fits_bigint(int(text))


def _finite_or_not_a_number(value: str) -> bool:
    """False for NaN and the infinities (1e999 included); True for finite numbers and for text that is
    no number at all (the route's own validation refuses that)."""
    try:
        return math.isfinite(float(value))
    except ValueError:
        return True


_KINDS: dict[int, tuple[APIRoute, dict[str, Kind]]] = {}  # by id: routes are not hashable; kept alive here


def parameter_kinds(route: APIRoute) -> dict[str, Kind]:
    """Query and path parameter names of a route (its dependencies' included) -> how to check them."""
    cached = _KINDS.get(id(route))
    if cached is not None and cached[0] is route:
        return cached[1]
    kinds: dict[str, Kind] = {}
    for field in _fields(route.dependant):
        found = set(_plain_types(field.field_info.annotation))
        kinds[field.alias] = "float" if float in found else "int" if int in found else "text"
    if len(_KINDS) > 1000:  # apps made and dropped (tests): start again rather than grow
        _KINDS.clear()
    _KINDS[id(route)] = (route, kinds)
    return kinds


def _fields(dependant: Any) -> Iterator[Any]:
    yield from dependant.query_params
    yield from dependant.path_params
    for sub in dependant.dependencies:
        yield from _fields(sub)


def _plain_types(annotation: Any) -> Iterator[Any]:
    """The types inside Optional / Union / Annotated / list[...] (bool counts as no number)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _plain_types(get_args(annotation)[0])
    elif origin in (Union, types.UnionType, list, tuple, set, frozenset):
        for arg in get_args(annotation):
            yield from _plain_types(arg)
    elif annotation is not bool:
        yield annotation
