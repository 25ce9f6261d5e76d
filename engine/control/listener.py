"""The control plane's lifecycle beside a started engine: store (migrated) → builder → converger →
restore deployed environments → the change feed (PostgreSQL) → the API listener on `api_port`;
and back, in reverse."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.config import Settings
from engine.control.accounts import Authenticator
from engine.control.api import Control, make_control_app
from engine.control.buildlock import BuildLocks
from engine.control.builds import Builder
from engine.control.converge import Converger
from engine.control.logsink import LogSink
from engine.control.store import Store, database_url, is_postgres
from engine.control.watch import StoreWatch


class ControlPlane:
    def __init__(self, settings: Settings, engine: Any) -> None:
        self.settings = settings
        self.engine = engine
        self.store: Store | None = None
        self.builder: Builder | None = None
        self.sink: LogSink | None = None
        self.converger: Converger | None = None
        self.watch: StoreWatch | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def open_store(self) -> None:
        """Open the store and check its schema (StoreError: unreachable, or a schema this engine
        must not run on). Called before anything else starts, so a bad store costs nothing."""
        s = self.settings
        self.store = Store(database_url(s.data_dir, s.database_url),
                           s.database_connect_timeout_s, s.database_command_timeout_s)
        await self.store.prepare()

    async def start(self) -> None:
        s = self.settings
        if self.store is None:
            await self.open_store()
        assert self.store is not None
        work_dir = Path(s.data_dir) if s.data_dir else Path(tempfile.mkdtemp(prefix="engine-control-"))
        self.builder = Builder(self.store, self.engine, work_dir,
                               lease_s=s.build_lease_s, lease_renew_s=s.build_lease_renew_s)
        engine_id = getattr(self.engine, "engine_id", "engine")
        shared = is_postgres(self.store.url)
        backend = getattr(self.engine, "backend", None)
        if shared and backend is not None:  # one dependency install per content across the replicas
            backend.build_guard = BuildLocks(self.store.url, f"functions-engine build {engine_id}").hold
        self.sink = LogSink(self.store, s.max_log_entries_per_environment, s.log_retention_s,
                            s.max_pending_log_lines, s.max_pending_log_lines_per_environment)
        self.sink.start()
        self.converger = converger = Converger(self.store, self.engine, self.builder, self.sink)
        await converger.reconcile()  # restore: serve again what the store says, before /readyz says 200
        converger.start(s.converge_interval_s)
        self.store.health.on_recovery.append(converger.reconcile)  # after an outage: a full pass at once
        if shared and s.converge_listen:
            self.watch = StoreWatch(self.store.url, f"functions-engine watch {engine_id}", converger.changed)
            self.watch.start()
        await self.builder.resume()
        ctl = Control(store=self.store, settings=s, auth=Authenticator(s.credential_cache_s),
                      builds=self.builder, converger=converger)
        self._runner = web.AppRunner(make_control_app(ctl), access_log=None)
        await self._runner.setup()
        assert s.api_port is not None
        await web.TCPSite(self._runner, s.host, s.api_port).start()
        self.url = f"http://{s.host}:{s.api_port}/v1"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.watch is not None:
            await self.watch.close()
        if self.converger is not None:
            await self.converger.close()
        if self.builder is not None:
            await self.builder.close()
        if self.sink is not None:
            await self.sink.close()
        if self.store is not None:
            await self.store.close()
