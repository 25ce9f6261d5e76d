"""Function Versions and Asset Versions: immutable uploads (multipart `Content`, `Path`, `Visibility`).

The upload is read part by part and its size counted while reading, so a body over
`max_version_bytes` is refused (413) without being held in memory first.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import BodyPartReader, web
from sqlalchemy import Row, insert, select

from engine.control import lookup
from engine.control.accounts import quota
from engine.control import store as t
from engine.control.api import account, control
from engine.control.errors import BadRequest, NotFound, TooLarge
from engine.control.resources.entries import KINDS
from engine.control.shapes import base_url, iso, new_sid, page

VISIBILITIES = ("public", "protected", "private")
# The characters the engine's project layout accepts in a path (engine/project.py), no `..`.
_PATH = re.compile(r"^/[A-Za-z0-9_\-.]+(/[A-Za-z0-9_\-.]+)*$")
#: A text field of the upload form at most (Path, Visibility).
MAX_FIELD_BYTES = 1024
#: Parts one upload form may have at most (Path, Visibility, Content and a few unknown ones).
MAX_PARTS = 16
RUNTIME_SUFFIXES = (".js", ".py")


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    segment, _key, _versions = KINDS[row.kind]
    url = f"{base_url(request)}/Services/{row.service_sid}/{segment}/{row.entry_sid}/Versions/{row.sid}"
    body: dict[str, Any] = {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
        f"{row.kind}_sid": row.entry_sid, "path": row.path, "visibility": row.visibility,
        "date_created": iso(row.date_created), "url": url,
        "content_sha256": row.blob_sha256,  # engine addition: lets a client upload only what changed
    }
    if row.kind == "function":
        body["links"] = {"function_version_content": f"{url}/Content"}
    return body


def check_path(path: str, kind: str) -> str:
    if len(path) > 255 or not _PATH.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise BadRequest(
            f"Path {path!r} is not a valid {kind} path: it must start with '/', use only letters, digits, "
            "'-', '_', '.' and '/', and have no empty, '.' or '..' segments"
        )
    if path.split("/")[-1].startswith("."):
        raise BadRequest(f"Path {path!r}: a segment starting with '.' is a hidden file, never served")
    return path


async def _field(part: BodyPartReader, name: str) -> str:
    data = await part.read_chunk(MAX_FIELD_BYTES + 1)
    if len(data) > MAX_FIELD_BYTES or not part.at_eof():
        raise BadRequest(f"form field {name} is longer than {MAX_FIELD_BYTES} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise BadRequest(f"form field {name} is not UTF-8") from None


async def read_upload(request: web.Request, limit: int) -> tuple[dict[str, str], bytes, str, str]:
    """(fields, content, filename, content type) of a multipart upload; 413 past `limit` bytes of Content."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("upload a version as multipart/form-data with fields Path, Visibility and a file Content")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"the multipart body cannot be read: {exc}") from None
    fields: dict[str, str] = {}
    content: bytes | None = None
    filename, content_type = "", "application/octet-stream"
    for _ in range(MAX_PARTS + 1):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise BadRequest("the upload must be flat multipart/form-data with named fields")
        if part.name == "Content":
            if content is not None:
                raise BadRequest("the upload has two Content parts; send one file per version")
            chunks, size = [], 0
            while chunk := await part.read_chunk(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"Content is over max_version_bytes ({limit} bytes); make the file smaller")
                chunks.append(chunk)
            content = b"".join(chunks)
            filename = part.filename or ""
            content_type = part.headers.get("Content-Type", content_type)
        else:
            fields[part.name] = await _field(part, part.name)
    else:
        raise BadRequest(f"the upload form has more than {MAX_PARTS} parts")
    if content is None:
        raise BadRequest("missing required parameter Content (a file part)")
    return fields, content, filename, content_type


def make_routes(kind: str) -> web.RouteTableDef:
    segment, _list, versions_key = KINDS[kind]
    routes = web.RouteTableDef()
    prefix = f"/v1/Services/{{service}}/{segment}/{{entry}}/Versions"

    async def parents(conn: Any, request: web.Request) -> Row[Any]:
        acct = account(request)
        service = await lookup.service(conn, acct, request.match_info["service"])
        return await lookup.entry(conn, acct, service.sid, kind, request.match_info["entry"])

    async def one(conn: Any, request: web.Request) -> Row[Any]:
        entry = await parents(conn, request)
        row = (await conn.execute(select(t.versions).where(
            t.versions.c.account_sid == account(request), t.versions.c.entry_sid == entry.sid,
            t.versions.c.sid == request.match_info["sid"],
        ))).first()
        if row is None:
            raise NotFound(f"{kind} version {request.match_info['sid']} not found in {kind} {entry.sid}")
        return row

    @routes.post(prefix)
    async def create(request: web.Request) -> web.Response:
        ctl, acct = control(request), account(request)
        async with ctl.store.connect() as conn:
            await parents(conn, request)  # 404 before reading a byte of another account's upload
            # The listener's body cap (client_max_size) does not apply to a streamed multipart
            # read, so the account's own quota may be above or below the engine-wide setting.
            limit = await quota(conn, acct, "max_version_bytes", ctl.settings)
        fields, content, filename, content_type = await read_upload(request, limit)
        path = check_path(fields.get("Path") or "", kind)
        if "\x00" in filename or "\x00" in content_type:  # PostgreSQL's text cannot hold it
            raise BadRequest("the Content part's filename or Content-Type contains a NUL character")
        visibility = fields.get("Visibility", "")
        if visibility not in VISIBILITIES:
            raise BadRequest(f"Visibility must be one of {', '.join(VISIBILITIES)} (got {visibility!r})")
        if kind == "function":
            if not filename.endswith(RUNTIME_SUFFIXES):  # the extension picks the runtime; default Node
                filename = (filename or path.rsplit("/", 1)[-1]) + (".py" if "python" in content_type else ".js")
            try:
                content.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"function {path}: Content is not UTF-8 text") from None
        async with ctl.store.begin() as conn:
            entry = await parents(conn, request)
            digest = await t.put_blob(conn, content)
            sid = new_sid("ZN")
            await conn.execute(insert(t.versions).values(
                sid=sid, account_sid=acct, service_sid=entry.service_sid, entry_sid=entry.sid, kind=kind, path=path,
                visibility=visibility, filename=filename[-255:], content_type=content_type[:255], blob_sha256=digest,
                size_bytes=len(content), date_created=t.now(),
            ))
            row = (await conn.execute(select(t.versions).where(t.versions.c.sid == sid))).first()
        return web.json_response(render(request, row), status=201)

    @routes.get(prefix)
    async def list_(request: web.Request) -> web.Response:
        ctl = control(request)
        async with ctl.store.connect() as conn:
            entry = await parents(conn, request)
            query = (select(t.versions).where(t.versions.c.account_sid == account(request), t.versions.c.entry_sid == entry.sid)
                     .order_by(t.versions.c.date_created, t.versions.c.sid))
            return await page(request, conn, query, versions_key, lambda row: render(request, row))

    @routes.get(prefix + "/{sid}")
    async def fetch(request: web.Request) -> web.Response:
        async with control(request).store.connect() as conn:
            row = await one(conn, request)
        return web.json_response(render(request, row))

    if kind == "function":
        @routes.get(prefix + "/{sid}/Content")
        async def content(request: web.Request) -> web.Response:
            async with control(request).store.connect() as conn:
                row = await one(conn, request)
                data = await t.get_blob(conn, row.blob_sha256)
            url = f"{base_url(request)}/Services/{row.service_sid}/Functions/{row.entry_sid}/Versions/{row.sid}/Content"
            return web.json_response({
                "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
                "function_sid": row.entry_sid, "content": data.decode("utf-8", errors="replace"), "url": url,
            })

    return routes


routes = [*make_routes("function"), *make_routes("asset")]
