"""`python -m engine deploy|activate|env|logs`: the engine's own deploy client, on the public API only.

`deploy PROJECT_DIR --api URL --service NAME [--environment SUFFIX]` finds or creates the service
and environment, uploads only the functions and assets whose content differs from the newest
version the service has (by the `content_sha256` the engine returns), builds, waits with
progress, sets the `.env` variables and deploys. Credentials: ENGINE_ACCOUNT_SID / ENGINE_AUTH_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from engine.errors import EngineError
from engine.project import load_project

#: How long `deploy` waits for its build, seconds.
BUILD_WAIT_S = 900.0


class ClientError(Exception):
    pass


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--api", required=True, help="the control API's base, e.g. http://127.0.0.1:3002")
        p.add_argument("--service", required=True, help="the service's UniqueName (or SID)")
        p.add_argument("--environment", default="", help="the environment's DomainSuffix (none: production)")

    deploy = sub.add_parser("deploy", help="deploy a project directory through the control API")
    deploy.add_argument("project", metavar="PROJECT_DIR")
    deploy.add_argument("--runtime", default="node22", help="the build's Runtime (node18|node20|node22)")
    common(deploy)
    activate = sub.add_parser("activate", help="serve an existing build (promote or roll back)")
    activate.add_argument("--build", required=True, metavar="ZB…")
    common(activate)
    env = sub.add_parser("env", help="list, set or unset an environment's variables")
    env.add_argument("verb", choices=["list", "set", "unset"])
    env.add_argument("pairs", nargs="*", metavar="KEY=VALUE|KEY")
    common(env)
    logs = sub.add_parser("logs", help="print an environment's logs (--tail: keep polling)")
    logs.add_argument("--tail", action="store_true")
    common(logs)


def run(args: argparse.Namespace) -> int:
    sid, token = os.environ.get("ENGINE_ACCOUNT_SID", ""), os.environ.get("ENGINE_AUTH_TOKEN", "")
    if not sid or not token:
        print("error: set ENGINE_ACCOUNT_SID and ENGINE_AUTH_TOKEN (from `python -m engine accounts create`)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(args, sid, token))
    except (ClientError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base.rstrip("/").removesuffix("/v1") + "/v1"

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"
        async with self.session.request(method, url, **kwargs) as resp:
            body = await resp.read()
            if resp.status >= 400:
                try:
                    message = json.loads(body)["message"]
                except (ValueError, KeyError):
                    message = body.decode(errors="replace")[:500]
                raise ClientError(f"{method} {path}: {resp.status} {message}")
            return json.loads(body) if body else None

    async def all(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = await self.call("GET", path, params={"PageSize": "1000"})
        while True:
            items += page[page["meta"]["key"]]
            if not page["meta"]["next_page_url"]:
                return items
            page = await self.call("GET", page["meta"]["next_page_url"])


async def _environment(api: Api, service: str, suffix: str, create: bool) -> dict[str, Any]:
    for env in await api.all(f"Services/{service}/Environments"):
        if (env["domain_suffix"] or "") == suffix:
            return env
    if not create:
        raise ClientError(f"service {service} has no environment with DomainSuffix {suffix!r}")
    data = {"UniqueName": f"{suffix}-environment" if suffix else "production"}
    if suffix:
        data["DomainSuffix"] = suffix
    return await api.call("POST", f"Services/{service}/Environments", data=data)


async def _main(args: argparse.Namespace, sid: str, token: str) -> int:
    auth = aiohttp.BasicAuth(sid, token)
    async with aiohttp.ClientSession(auth=auth, timeout=aiohttp.ClientTimeout(total=600)) as session:
        api = Api(session, args.api)
        if args.command == "deploy":
            return await _deploy(api, args)
        service = (await api.call("GET", f"Services/{args.service}"))["sid"]
        env = await _environment(api, service, args.environment, create=False)
        if args.command == "activate":
            await api.call("POST", f"Services/{service}/Environments/{env['sid']}/Deployments", data={"BuildSid": args.build})
            print(f"{env['domain_name']} now serves build {args.build}")
        elif args.command == "env":
            await _env(api, service, env, args.verb, args.pairs)
        elif args.command == "logs":
            await _logs(api, service, env, args.tail)
        return 0


async def _deploy(api: Api, args: argparse.Namespace) -> int:
    project = load_project(Path(args.project), args.service)
    try:
        service = (await api.call("GET", f"Services/{args.service}"))["sid"]
    except ClientError:
        service = (await api.call("POST", "Services", data={"UniqueName": args.service, "FriendlyName": args.service}))["sid"]
    env = await _environment(api, service, args.environment, create=True)
    uploads = [("function", f.url_path, f.visibility, project.root / f.file) for f in project.functions.values()]
    uploads += [("asset", a.url_path, a.visibility, a.path) for p, a in project.assets.items() if p != "/"]
    versions: dict[str, list[str]] = {"function": [], "asset": []}
    sent = 0
    for kind, path, visibility, file in sorted(uploads):
        data = file.read_bytes()
        sid, uploaded = await _upload(api, service, kind, path, visibility, file.name, data)
        versions[kind].append(sid)
        sent += uploaded
        print(f"  {'uploaded' if uploaded else 'unchanged'} {kind} {path}", flush=True)
    print(f"{sent} of {len(uploads)} files uploaded", flush=True)
    form: dict[str, Any] = {"FunctionVersions": versions["function"], "AssetVersions": versions["asset"], "Runtime": args.runtime}
    package = project.root / "package.json"
    if package.is_file():
        form["Dependencies"] = json.dumps(json.loads(package.read_text()).get("dependencies") or {})
    build = await api.call("POST", f"Services/{service}/Builds", data=_form(form))
    print(f"building {build['sid']} ...", flush=True)
    deadline = time.monotonic() + BUILD_WAIT_S
    while True:
        status = (await api.call("GET", f"Services/{service}/Builds/{build['sid']}/Status"))["status"]
        if status != "building":
            break
        if time.monotonic() > deadline:
            raise ClientError(f"build {build['sid']} still building after {BUILD_WAIT_S:.0f} s")
        await asyncio.sleep(1)
    if status == "failed":
        failed = await api.call("GET", f"Services/{service}/Builds/{build['sid']}")
        raise ClientError(f"build {build['sid']} failed: {failed.get('error')}")
    await _env(api, service, env, "set", [f"{k}={v}" for k, v in project.env.items()], quiet=True)
    await api.call("POST", f"Services/{service}/Environments/{env['sid']}/Deployments", data={"BuildSid": build["sid"]})
    print(f"deployed build {build['sid']}: http://{env['domain_name']}/ (on the engine's functions port)", flush=True)
    return 0


def _form(values: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in values.items():
        out += [(key, v) for v in value] if isinstance(value, list) else [(key, str(value))]
    return out


async def _upload(api: Api, service: str, kind: str, path: str, visibility: str, filename: str, data: bytes) -> tuple[str, bool]:
    """The version SID for this content: the newest existing one if identical, else a new upload."""
    segment = "Functions" if kind == "function" else "Assets"
    entries = await api.all(f"Services/{service}/{segment}")
    entry = next((e for e in entries if e["friendly_name"] == path), None)
    if entry is None:
        entry = await api.call("POST", f"Services/{service}/{segment}", data={"FriendlyName": path})
    existing = await api.all(f"Services/{service}/{segment}/{entry['sid']}/Versions")
    digest = hashlib.sha256(data).hexdigest()
    for version in reversed(existing):
        if version.get("content_sha256") == digest and version["path"] == path and version["visibility"] == visibility:
            return version["sid"], False
    form = aiohttp.FormData()
    form.add_field("Path", path)
    form.add_field("Visibility", visibility)
    form.add_field("Content", data, filename=filename)
    version = await api.call("POST", f"Services/{service}/{segment}/{entry['sid']}/Versions", data=form)
    return version["sid"], True


async def _env(api: Api, service: str, env: dict[str, Any], verb: str, pairs: list[str], quiet: bool = False) -> None:
    base = f"Services/{service}/Environments/{env['sid']}/Variables"
    current = {v["key"]: v for v in await api.all(base)}
    if verb == "list":
        for key, variable in sorted(current.items()):
            print(f"{key}={variable['value']}")
        return
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if verb == "set":
            if not sep:
                raise ClientError(f"{pair!r}: give KEY=VALUE")
            if key in current:
                if current[key]["value"] != value:
                    await api.call("POST", f"{base}/{current[key]['sid']}", data={"Value": value})
            else:
                await api.call("POST", base, data={"Key": key, "Value": value})
        elif key in current:
            await api.call("DELETE", f"{base}/{current[key]['sid']}")
        if not quiet:
            print(f"{verb} {key}")


async def _logs(api: Api, service: str, env: dict[str, Any], tail: bool) -> None:
    seen: set[str] = set()
    while True:
        for line in await api.all(f"Services/{service}/Environments/{env['sid']}/Logs"):
            if line["sid"] not in seen:
                seen.add(line["sid"])
                print(f"{line['date_created']} {line['level']:5} {line['message']}", flush=True)
        if not tail:
            return
        await asyncio.sleep(1)
