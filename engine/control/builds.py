"""Builds, in the background: materialise the versions into a project directory, check it with the
engine's own project loader, and have the backend prepare its images (npm/pip install, image build).

`building → completed | failed`; a failure keeps the reason (the loader's message naming the file,
or the npm/pip error line) on the Build. The project directory is derived from the store (blobs),
so it can be made again on any replica or after a restart; the backend caches images by content,
so a later activation of the same build finds its image ready.

A build being built is leased to the replica running it (engine/control/leases.py): renewed every
`build_lease_renew_s` while it is queued or running, taken over by any replica's converge pass
once `build_lease_s` passed without renewal, so a replica that dies mid-build leaves nothing
`building` for ever.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.backends.base import WorkerSpec
from engine.control import leases, metrics
from engine.control import store as t
from engine.control.errors import BadRequest
from engine.errors import EngineError
from engine.project import load_project

log = structlog.get_logger("engine.control")

#: Dependencies one build may name at most.
MAX_DEPENDENCIES = 200
_NAME = re.compile(r"^(@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]{0,213}$", re.IGNORECASE)


def parse_dependencies(raw: str | None) -> list[dict[str, str]]:
    """The `Dependencies` field as the clients send it, quirks included.

    Accepted: a JSON list of `{"name","version"}`, a JSON object `{name: version}`, either of
    them JSON-encoded once more (a JSON string), or wrapped in one extra pair of double quotes
    (what the npm deploy client sends). Anything else is a 400 naming the problem.
    """
    if raw is None or raw.strip() in ("", '""'):
        return []
    text = raw.strip()
    value: Any
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if len(text) >= 2 and text[0] == text[-1] == '"':
            try:
                value = json.loads(text[1:-1])
            except json.JSONDecodeError:
                raise BadRequest("Dependencies is not JSON (a list of {name, version} or an object of name: version)") from None
        else:
            raise BadRequest("Dependencies is not JSON (a list of {name, version} or an object of name: version)") from None
    if isinstance(value, str):
        return parse_dependencies(value) if value.strip() != text else []
    if isinstance(value, dict):
        value = [{"name": k, "version": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise BadRequest("Dependencies must be a list of {name, version} or an object of name: version")
    if len(value) > MAX_DEPENDENCIES:
        raise BadRequest(f"Dependencies names {len(value)} packages; at most {MAX_DEPENDENCIES}")
    out: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("version", ""), str):
            raise BadRequest(f"Dependencies entry {item!r} must be an object with string name and version")
        if not _NAME.match(item["name"]):
            raise BadRequest(f"Dependencies: {item['name']!r} is not an npm package name")
        if len(item.get("version", "")) > 256:
            raise BadRequest(f"Dependencies: the version of {item['name']} is longer than 256 characters")
        out.append({"name": item["name"], "version": item.get("version", "") or "*"})
    return out


def _file_for(kind: str, path: str, visibility: str, filename: str) -> str:
    """Where a version lives in the project layout: `functions/a/b.protected.js`, `assets/x.private.css`."""
    inner = path.lstrip("/")
    marker = "" if visibility == "public" else f".{visibility}"
    if kind == "function":
        suffix = ".py" if filename.endswith(".py") else ".js"
        return f"functions/{inner}{marker}{suffix}"
    head, dot, ext = inner.rpartition(".")
    if dot and "/" not in ext and head and not head.endswith("/"):
        return f"assets/{head}{marker}.{ext}"
    return f"assets/{inner}{marker}"


async def materialise(conn: AsyncConnection, build: Any, dest: Path) -> None:
    """Write the build's versions (and package.json) under `dest`, made atomically (tmp then rename)."""
    if dest.is_dir():
        return
    sids = json.loads(build.function_versions) + json.loads(build.asset_versions)
    rows = (await conn.execute(select(t.versions).where(t.versions.c.sid.in_(sids)))).all() if sids else []
    tmp = dest.with_name(dest.name + ".tmp")
    files: dict[str, bytes] = {}
    for row in rows:
        files[_file_for(row.kind, row.path, row.visibility, row.filename)] = await t.get_blob(conn, row.blob_sha256)
    dependencies = json.loads(build.dependencies)
    if dependencies:
        package = {"name": "service", "version": "1.0.0", "private": True,
                   "dependencies": {d["name"]: d["version"] for d in dependencies}}
        files["package.json"] = json.dumps(package, indent=2).encode()

    def write() -> None:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a build that was stopped halfway
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        tmp.mkdir(parents=True, exist_ok=True)
        tmp.rename(dest)

    await asyncio.to_thread(write)


class Builder:
    """Runs builds one at a time in the background (the machine builds images; one is enough)."""

    def __init__(self, store: t.Store, engine: Any, work_dir: Path, *,
                 lease_s: float = 30.0, lease_renew_s: float = 10.0) -> None:
        self.store = store
        self.engine = engine
        self.work_dir = work_dir
        self.owner: str = getattr(engine, "engine_id", None) or "engine"
        self.lease_s = lease_s
        self.lease_renew_s = lease_renew_s
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()  # builds this replica holds the lease of (queued or running)
        self._renewer: asyncio.Task[None] | None = None
        self._taking_over = asyncio.Lock()  # one claim round at a time (start-up's and a pass's)

    def project_dir(self, build_sid: str) -> Path:
        return self.work_dir / "builds" / build_sid

    async def new_lease(self, conn: AsyncConnection) -> dict[str, Any]:
        """Owner and lease columns for a build created here (written in the same transaction)."""
        return await leases.new_lease(conn, self.owner, self.lease_s)

    def start(self, build_sid: str, service_name: str) -> None:
        """Run a build whose lease this replica holds."""
        self._held.add(build_sid)
        task = asyncio.create_task(self._run(build_sid, service_name), name=f"build-{build_sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_loop(), name="build-leases")

    async def take_over(self, *, any_lease: bool = False) -> list[str]:
        """Claim and run the builds whose lease ran out (their replica died or stopped); with
        `any_lease`, every build still `building` (an engine starting on its own embedded store)."""
        taken: list[str] = []
        async with self._taking_over:
            async with self.store.connect() as conn:
                candidates = await leases.expired(conn, any_lease=any_lease)
            for sid, name, previous in candidates:
                if sid in self._held:
                    continue
                async with self.store.begin() as conn:
                    if not await leases.claim(conn, sid, self.owner, self.lease_s, any_lease=any_lease):
                        continue  # another replica claimed it first
                log.info("build_taken_over", build=sid, previous_owner=previous)
                taken.append(sid)
                self.start(sid, name)
        return taken

    async def resume(self) -> None:
        """At start: builds left `building` by a replica that is gone are run again. On the embedded
        store this engine is the only one, so all of them; on a shared one, those whose lease ran out
        (the others are taken over by a later converge pass if their replica does not renew them)."""
        await self.take_over(any_lease=not t.is_postgres(self.store.url))

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_renew_s)
            if not self._held:
                continue
            try:
                async with self.store.begin() as conn:
                    lost = await leases.renew(conn, sorted(self._held), self.owner, self.lease_s)
            except Exception as exc:  # the store is unreachable: the lease runs out, another replica takes over
                log.warning("build_lease_not_renewed", error=str(exc), builds=sorted(self._held))
                continue
            for sid in lost & self._held:
                log.warning("build_lease_lost", build=sid, lease_s=self.lease_s)

    async def close(self) -> None:
        unfinished = sorted(self._held)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if unfinished:  # stopped before they finished: another replica (or this one restarted) takes them at once
            try:
                async with self.store.begin() as conn:
                    await leases.release(conn, unfinished, self.owner)
            except Exception as exc:
                log.warning("build_lease_not_released", error=str(exc), builds=unfinished)

    async def ensure_project(self, build_sid: str) -> Path:
        """The build's project directory, made again from the store when missing."""
        dest = self.project_dir(build_sid)
        if not dest.is_dir():
            async with self.store.connect() as conn:
                build = (await conn.execute(select(t.builds).where(t.builds.c.sid == build_sid))).first()
                if build is None:
                    raise LookupError(f"build {build_sid} is not in the store")
                await materialise(conn, build, dest)
        return dest

    async def _run(self, build_sid: str, service_name: str) -> None:
        try:
            async with self._lock:
                await self._run_locked(build_sid, service_name)
        finally:
            self._held.discard(build_sid)

    async def _run_locked(self, build_sid: str, service_name: str) -> None:
        started = time.monotonic()
        try:
            error = await self._build(build_sid, service_name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a build's failure is the build's, never the engine's
            log.exception("build_crashed", build=build_sid)
            error = f"the build failed inside the engine: {exc}"
        status = "failed" if error else "completed"
        async with self.store.begin() as conn:
            recorded = await leases.finish(conn, build_sid, self.owner, status, error)
        if not recorded:  # its lease ran out meanwhile and another replica took it over (or it was deleted)
            log.warning("build_lease_lost", build=build_sid, lease_s=self.lease_s, outcome=status,
                        why="another replica took the build over after its lease ran out, or it was deleted")
            return
        metrics.BUILDS.labels(status).inc()
        metrics.BUILD_SECONDS.labels(status).observe(time.monotonic() - started)
        log.info("build_finished", build=build_sid, status=status, error=error)

    async def _build(self, build_sid: str, service_name: str) -> str | None:
        """None when built; else the reason, for people."""
        root = await self.ensure_project(build_sid)
        try:
            project = await asyncio.to_thread(load_project, root, service_name)
        except EngineError as exc:
            return str(exc).replace(str(root) + "/", "").replace(str(root), "the build")
        backend = getattr(self.engine, "backend", None)
        if backend is None:
            return "the engine has no backend to build with (it is starting or stopping); create the build again"
        lines: list[str] = []
        for runtime in project.runtimes():
            spec = WorkerSpec(engine_id=self.engine.engine_id, service=service_name,
                              build_id=project.content_hash[:12], runtime=runtime, project_root=root)
            try:
                await backend.prepare(spec, lines.append)
            except EngineError as exc:
                return f"{runtime} dependencies or image: {exc}"
        return None
