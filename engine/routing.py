"""Which service a request is for (by Host), and which function or asset (by path).

The request path reads one immutable `RouteTable`; a deployment builds a new table and swaps the
reference (`Router.publish`), so a request sees either the whole old table or the whole new one,
with no lock and no await between looking up the service and holding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from engine.project import AssetDef, FunctionDef
from engine.service import Service


@dataclass(frozen=True)
class Route:
    service: Service
    function: FunctionDef | None = None
    asset: AssetDef | None = None


def normalise_host(host: str) -> str:
    """`Shop-Dev.localhost:3000.` → `shop-dev.localhost` (IPv6 literals keep their brackets)."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return hostname.lower().rstrip(".")


@dataclass(frozen=True)
class RouteTable:
    """One immutable snapshot of what is served.

    Deployed services are matched by their exact hostname first. Folder services keep today's
    rules: with one folder service every other host reaches it; with several,
    `<service>.<domain>` picks one. Beside the control API (`host_only`), a folder service is
    reached only at `<service>.<domain>`, so unknown and withdrawn hosts are 404, never a folder's.
    """

    deployed: Mapping[str, Service] = field(default_factory=lambda: MappingProxyType({}))  # by hostname
    folder: Mapping[str, Service] = field(default_factory=lambda: MappingProxyType({}))  # by service name
    only: Service | None = None
    suffix: str = ".localhost"

    def service_for(self, host: str) -> Service | None:
        if self.deployed:
            deployed = self.deployed.get(normalise_host(host))
            if deployed is not None:
                return deployed
        if self.only is not None:
            return self.only
        hostname = normalise_host(host)
        if not hostname.endswith(self.suffix):
            return None
        return self.folder.get(hostname[: -len(self.suffix)])


class Router:
    """Routes by Host and path through the current table; `publish` swaps in a new one."""

    def __init__(self, services: list[Service], domain: str, *, host_only: bool = False) -> None:
        """`host_only`: never route every Host to a lone folder service (deployments share the listener)."""
        self._suffix = "." + domain.lower().strip(".")
        self._folder = MappingProxyType({s.name: s for s in services})
        self.host_only = host_only
        self._only = services[0] if len(services) == 1 and not host_only else None
        self._table = RouteTable(folder=self._folder, only=self._only, suffix=self._suffix)

    @property
    def table(self) -> RouteTable:
        return self._table

    def folder_hostname(self, service: Service) -> str:
        """The hostname a folder service is reached by when several are served."""
        return service.name + self._suffix

    def publish(self, deployed: Mapping[str, Service]) -> None:
        """Serve exactly these deployed services (by hostname) from the next request on."""
        self._table = RouteTable(
            deployed=MappingProxyType(dict(deployed)), folder=self._folder, only=self._only, suffix=self._suffix,
        )

    def service_for(self, host: str) -> Service | None:
        return self._table.service_for(host)

    def route(self, host: str, path: str) -> Route | None:
        """The function or asset at `path`; None for unknown hosts, paths and private entries."""
        service = self._table.service_for(host)
        if service is None:
            return None
        function = service.project.functions.get(path)
        if function is not None:
            return None if function.visibility == "private" else Route(service, function=function)
        asset = service.project.assets.get(path)
        if asset is not None and asset.visibility != "private":
            return Route(service, asset=asset)
        return None
