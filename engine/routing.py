"""Which service a request is for (by Host), and which function or asset (by path)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.project import AssetDef, FunctionDef
from engine.service import Service


@dataclass(frozen=True)
class Route:
    service: Service
    function: FunctionDef | None = None
    asset: AssetDef | None = None


class Router:
    """With one service every host reaches it; with several, `<service>.<domain>` picks one."""

    def __init__(self, services: list[Service], domain: str) -> None:
        self._services = {s.name: s for s in services}
        self._only = services[0] if len(services) == 1 else None
        self._suffix = "." + domain.lower().strip(".")

    def service_for(self, host: str) -> Service | None:
        if self._only is not None:
            return self._only
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        hostname = hostname.lower().rstrip(".")
        if not hostname.endswith(self._suffix):
            return None
        return self._services.get(hostname[: -len(self._suffix)])

    def route(self, host: str, path: str) -> Route | None:
        """The function or asset at `path`; None for unknown hosts, paths and private entries."""
        service = self.service_for(host)
        if service is None:
            return None
        function = service.project.functions.get(path)
        if function is not None:
            return None if function.visibility == "private" else Route(service, function=function)
        asset = service.project.assets.get(path)
        if asset is not None and asset.visibility != "private":
            return Route(service, asset=asset)
        return None
