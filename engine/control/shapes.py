"""The hosted API's shapes: SIDs, dates, URLs, form fields in, list pages out."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.control.errors import BadRequest

#: Page size when the client names none, and the most it may ask for (as the hosted API).
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")


def new_sid(prefix: str) -> str:
    """`ZS` + 32 hex digits: 34 characters, as the hosted API's SIDs."""
    return prefix + uuid.uuid4().hex


def is_sid(value: str, prefix: str) -> bool:
    return value.startswith(prefix) and bool(_SID.match(value))


def iso(value: datetime | None) -> str | None:
    """`2026-12-06T05:40:00Z`, as the hosted API's dates."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def base_url(request: web.Request) -> str:
    """`http://host:port/v1`: the URLs in bodies point back at this listener, as the client saw it."""
    return f"{request.scheme}://{request.host}/v1"


def required(form: MultiMapping[str], name: str, max_len: int = 255) -> str:
    value = optional(form, name, max_len)
    if value is None or value == "":
        raise BadRequest(f"missing required parameter {name}")
    return value


def optional(form: MultiMapping[str], name: str, max_len: int = 255) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"parameter {name} must be a text field, not a file")
    if len(value) > max_len:
        raise BadRequest(f"parameter {name} is longer than {max_len} characters")
    if "\x00" in value:  # PostgreSQL's text cannot hold it (and no environment variable can)
        raise BadRequest(f"parameter {name} contains a NUL character")
    return value


class FormModel(BaseModel):
    """A form payload: fields are the hosted API's PascalCase names (aliases); unknown ones are ignored
    as the hosted API ignores them. Validators raise ValueError with the message the client reads."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)


_Form = TypeVar("_Form", bound=FormModel)


def parse_form(model: type[_Form], form: MultiMapping[Any]) -> _Form:
    """The form's text fields as `model`, or a 400 naming the first field at fault and why."""
    values: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        max_len = next((m.max_length for m in field.metadata if hasattr(m, "max_length")), None)
        value = optional(form, alias, max_len or 4096)
        if value is not None and not (value == "" and field.is_required()):
            values[alias] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else model.__name__
        if first["type"] == "missing":
            raise BadRequest(f"missing required parameter {where}") from None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise BadRequest(message if message.startswith(where) else f"parameter {where}: {message}") from None


def boolean(form: MultiMapping[str], name: str, default: bool) -> bool:
    value = optional(form, name, 8)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadRequest(f"parameter {name} must be true or false (got {value!r})")


def choice(form: MultiMapping[str], name: str, allowed: Sequence[str], default: str | None = None) -> str:
    value = optional(form, name, 32)
    if value is None:
        if default is None:
            raise BadRequest(f"missing required parameter {name} (one of {', '.join(allowed)})")
        return default
    if value not in allowed:
        raise BadRequest(f"parameter {name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _int_param(query: Mapping[str, str], name: str, low: int, high: int | None, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"parameter {name} must be an integer (got {raw!r})") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"parameter {name} must be {bound} (got {value})")
    return value


async def page(
    request: web.Request,
    conn: AsyncConnection,
    query: Select[Any],
    key: str,
    render: Callable[[Any], dict[str, Any]] | Callable[[Any], Awaitable[dict[str, Any]]],
    extra_params: Mapping[str, str] | None = None,
) -> web.Response:
    """One page of `query` (already ordered) as `{key: [...], "meta": {...}}`.

    `PageToken` is `PT<offset>`: pages stay stable while rows are appended at the end.
    """
    q = request.query
    size = _int_param(q, "PageSize", 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)
    number = _int_param(q, "Page", 0, None, 0)
    token = q.get("PageToken")
    if token is not None:
        if not re.fullmatch(r"PT\d{1,12}", token):
            raise BadRequest(f"parameter PageToken is not one this API issued (got {token!r})")
        offset = int(token[2:])
    else:
        offset = number * size
    rows = (await conn.execute(query.offset(offset).limit(size + 1))).all()
    items = []
    for row in rows[:size]:
        item = render(row)
        items.append(await item if hasattr(item, "__await__") else item)
    url = f"{request.scheme}://{request.host}{request.path}"
    keep = dict(extra_params or {})

    def link(n: int, at: int) -> str:
        params = {**keep, "PageSize": str(size), "Page": str(n)}
        if at:
            params["PageToken"] = f"PT{at}"
        return f"{url}?{urlencode(params)}"

    meta = {
        "page": number,
        "page_size": size,
        "first_page_url": link(0, 0),
        "previous_page_url": link(number - 1, max(offset - size, 0)) if offset > 0 else None,
        "next_page_url": link(number + 1, offset + size) if len(rows) > size else None,
        "url": link(number, offset),
        "key": key,
    }
    return web.json_response({key: items, "meta": meta})
