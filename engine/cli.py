"""`python -m engine serve PROJECT_DIR...`: flags, start-up report, signals."""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import sys
from typing import Any

import structlog

from engine import logs
from engine.app import Engine
from engine.config import Settings, load_settings
from engine.errors import EngineError

log = structlog.get_logger("engine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Serve Functions projects.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve one or more projects (each a service)")
    serve.add_argument("projects", nargs="*", metavar="PROJECT_DIR",
                       help="project directory, or NAME=DIR to name the service (default name: the directory's)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port for functions and assets (default 3000)")
    serve.add_argument("--admin-port", type=int, help="port for /healthz, /readyz, /metrics (default 3001)")
    serve.add_argument("--backend", choices=["process", "docker"], help="where workers run (default process)")
    serve.add_argument("--runtime", choices=["runc", "runsc"], help="container runtime for --backend docker")
    serve.add_argument("--domain", help="with several services, <service>.<domain> routes to each (default localhost)")
    serve.add_argument("--config", help="TOML or YAML file with any of these settings and per-function overrides")
    serve.add_argument("--behind-proxy", action="store_true", default=None,
                       help="trust X-Forwarded-Proto/-Host when checking signatures")
    serve.add_argument("--dev-mode", action="store_true", default=None, help="put error stacks in 500 bodies")
    serve.add_argument("--log-format", choices=["json", "console"], help="engine log format (default json)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--time-limit", dest="time_limit_s", type=float, help="default function time limit, seconds")
    serve.add_argument("--min-idle", type=int, help="warm workers kept per pool (default 1)")
    serve.add_argument("--max-workers", type=int, help="workers per pool at most (default 4)")
    serve.add_argument("--api-port", type=int, help="serve the control API (Serverless API v1) on this port")
    serve.add_argument("--data-dir", help="the control API's embedded store (SQLite) and build directories")
    serve.add_argument("--database-url", help="a SQLAlchemy async URL for the control store instead of --data-dir")
    from engine.control import cli as control_cli
    from engine.control import client as deploy_client

    control_cli.add_parsers(sub)
    deploy_client.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("accounts", "db"):
        from engine.control.cli import run

        return run(args)
    if args.command in ("deploy", "activate", "env", "logs"):
        from engine.control.client import run as run_client

        return run_client(args)
    cli: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "command"}
    if not cli["projects"]:
        cli["projects"] = None
    try:
        settings = load_settings(cli)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    return asyncio.run(serve(settings))


#: Exit status after a second signal cut the drain short (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Exit status when the control store cannot be used (bad URL, unreachable, schema to migrate or unknown).
EXIT_STORE = 2


async def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT, then drain and remove every worker; a second signal skips the drain.

    Exit status: 0 after a full drain, 1 if start-up failed, 130 after a second signal.
    """
    engine = Engine(settings)
    if settings.api_port is not None:
        engine.held_not_ready = "restoring deployed environments from the control store"
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    serve_task = asyncio.current_task()
    assert serve_task is not None
    signals_seen = 0
    control: Any = None
    removing = False  # workers are being removed: a further signal must not interrupt that

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("signal", signal=name, action="drain")
            stop.set()
        elif signals_seen == 2 and not removing:
            log.warning("signal", signal=name, action="exit now")
            serve_task.cancel()
        else:
            log.warning("signal", signal=name, action="ignored: already removing workers")

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    code = 1
    try:
        if settings.api_port is not None:
            from engine.control.listener import ControlPlane

            control = ControlPlane(settings, engine)
            try:
                await control.open_store()  # first: a store this engine must not run on stops it before anything starts
            except EngineError as exc:  # StoreError, or a ConfigError of the URL
                print(f"error: {exc}", file=sys.stderr, flush=True)
                code = EXIT_STORE
                return code
        try:
            await engine.start()
        except EngineError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return code
        except OSError as exc:  # typically a listener that cannot bind: say what, not a traceback
            where = f" on {settings.host} (port {settings.port}, admin port {settings.admin_port})"
            bind = exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)
            print(f"error: cannot start{where if bind else ''}: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return code
        print(f"Serving with backend {engine.backend.name if engine.backend else '?'}: "
              f"{engine.backend.isolation if engine.backend else ''}", flush=True)
        for line in engine.urls:
            print(f"  {line}", flush=True)
        print(f"Admin: http://{settings.host}:{settings.admin_port}/healthz /readyz /metrics", flush=True)
        if control is not None:
            try:
                await control.start()
            except (EngineError, OSError) as exc:
                print(f"error: cannot start the control API on port {settings.api_port}: {exc}", file=sys.stderr, flush=True)
                await control.close()
                control = None
                return code
            engine.held_not_ready = None
            print(f"Control API: {control.url} (HTTP Basic AccountSid:AuthToken; "
                  "make an account with `python -m engine accounts create NAME`)", flush=True)
        await stop.wait()
        await engine.drain()
        code = 0
    except asyncio.CancelledError:
        code = EXIT_INTERRUPTED
    finally:
        removing = True
        if control is not None:
            await control.close()
        await engine.close_pools()
        log.info("stopped", exit_code=code)
    return code
