"""Every setting of the engine, as one pydantic model.

Sources, strongest first: command-line flags, `ENGINE_*` environment variables, the `--config`
file (TOML or YAML), the defaults below. Errors name the key and the bad value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from engine.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB

_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class FunctionOverrides(BaseModel):
    """Per-function settings, keyed by the function's URL path (`/sms/reply`)."""

    model_config = ConfigDict(extra="forbid")

    time_limit_s: float | None = Field(default=None, gt=0, le=900)


class ServiceOverrides(BaseModel):
    """Per-service settings, keyed by service name."""

    model_config = ConfigDict(extra="forbid")

    service_sid: str | None = None
    environment_sid: str | None = None
    # Pools are per (service, language), so these are per service, not per function; None: the global value.
    min_idle: int | None = Field(default=None, ge=0)
    max_workers: int | None = Field(default=None, ge=1)
    memory_mb: int | None = Field(default=None, ge=32)
    max_worker_invocations: int | None = Field(default=None, ge=1)
    max_worker_age_s: float | None = Field(default=None, gt=0)
    # Set here, min_idle pins the service: kept warm whatever the traffic, counted against the warm budget.
    scale_to_zero_after_s: float | None = Field(default=None, gt=0)
    functions: dict[str, FunctionOverrides] = Field(default_factory=dict)


class EnvironmentOverrides(BaseModel):
    """Per deployed environment (control API), keyed by its domain name: unique on the engine, across
    accounts, unlike the `<service>-<environment>` name two accounts may share. Beats `[services.X]`."""

    model_config = ConfigDict(extra="forbid")

    scale_to_zero_after_s: float | None = Field(default=None, gt=0)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class Settings(BaseSettings):
    """The engine's configuration. Units are in the names; each limit says what it protects."""

    model_config = SettingsConfigDict(env_prefix="ENGINE_", extra="forbid", validate_default=True)

    # What to serve: `PATH` or `NAME=PATH`, one service each.
    projects: list[str] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    # Separate listener for /healthz, /readyz, /metrics so no function path can shadow them.
    admin_port: int = Field(default=3001, ge=0, le=65535)
    backend: Literal["process", "docker"] = "process"
    runtime: Literal["runc", "runsc"] = "runc"  # docker backend only
    # Which managed containers the docker backend removes at start-up: "dead-owners" = those whose
    # engine process is gone (safe on a daemon shared by several engines); "all" = this daemon belongs
    # to this engine alone, as on Kubernetes; remove every managed container at start-up.
    docker_reap: Literal["dead-owners", "all"] = "dead-owners"
    # With several services, `<service>.<domain>` picks the service from the Host header.
    domain: str = "localhost"
    # Honour X-Forwarded-For/-Proto/-Host, but only on connections from `trusted_proxies`: the
    # forwarded host then picks the service and is the host signatures are checked against.
    behind_proxy: bool = False
    # Addresses (IPs or CIDRs) of the proxies whose X-Forwarded-* headers are believed when
    # `behind_proxy` is on; anyone else's are ignored. Also exempt from max_connections_per_client.
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # Dev mode puts error stacks in 500 bodies; never on a shared runtime.
    dev_mode: bool = False
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    config: Path | None = None  # the file these settings were read from, if any

    # --- HTTP limits (front door) ---
    max_body_bytes: int = Field(default=1 * MiB, gt=0)  # request body; over it → 413
    max_headers: int = Field(default=90, gt=0)  # request header count; over it → 431
    max_header_bytes: int = Field(default=15_000, gt=0)  # total request header size; over → 431
    # The request line (method, URL, version); over it → 414. Counted apart from max_header_bytes.
    max_request_line_bytes: int = Field(default=16 * KiB, ge=256)
    # A request's head must arrive within this (from accept, or from its first byte on a kept-alive
    # connection); else the connection is closed. Protects against slowloris clients.
    header_read_timeout_s: float = Field(default=10.0, gt=0)
    # A request's body must arrive within this once its head has; else 408 and the connection is closed.
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    # A function's (or the engine's) reply must be taken by the client within this; else the
    # connection is dropped. Protects against clients that never read (slow-read), which would
    # hold the reply in memory and the connection for ever.
    response_write_timeout_s: float = Field(default=60.0, gt=0)
    # An idle kept-alive connection is closed after this (longer than a proxy's upstream keep-alive).
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    # Open connections from one peer address (an IPv6 /64 counts as one); more are closed at once.
    # The peer is the TCP peer: behind a proxy that is the proxy, so `trusted_proxies` are exempt.
    # A quarter of max_connections: one address cannot take the listener, and a NAT or Twilio's
    # webhook senders (a few addresses, many requests) have room.
    max_connections_per_client: int = Field(default=256, ge=1)
    max_connections: int = Field(default=1024, ge=1)  # open connections in all; more are closed at once

    # --- invocation limits ---
    time_limit_s: float = Field(default=10.0, gt=0, le=900)  # callback deadline; then 504 + kill
    acquire_timeout_s: float = Field(default=10.0, gt=0)  # wait for a worker; then 503
    max_response_bytes: int = Field(default=4 * MiB, gt=0)  # reply body; over it → 502
    max_log_bytes: int = Field(default=64 * KiB, ge=0)  # handler output kept per invocation
    max_frame_bytes: int = Field(default=8 * MiB, gt=0)  # one protocol line from a worker

    # --- pools (one per service and language) ---
    min_idle: int = Field(default=1, ge=0)  # warm workers kept ready
    max_workers: int = Field(default=4, ge=1)  # workers per pool, busy or idle
    max_queue: int = Field(default=64, ge=0)  # requests waiting for a worker; beyond → 503
    idle_timeout_s: float = Field(default=300.0, gt=0)  # idle workers above min_idle are reaped
    bootstrap_timeout_s: float = Field(default=30.0, gt=0)  # init → ready
    # A worker's life is bounded, so what a handler left in it that no clean-check sees does not last:
    max_worker_invocations: int = Field(default=10_000, ge=1)  # then it is retired and replaced
    max_worker_age_s: float = Field(default=3600.0, gt=0)  # then it is retired (after its invocation, or idle)
    # One tenant cannot hold the backend: the docker backend runs 8 calls at once for every pool.
    max_lifecycle_calls_per_pool: int = Field(default=2, ge=1)  # worker starts in flight per pool (and as many removals)
    crash_backoff_max_s: float = Field(default=10.0, gt=0)  # longest wait before a start after failed starts/young deaths
    # The warm budget (engine/warmth.py): idle workers of all pools share it, each costing its pool's
    # memory_mb; over it, the least recently called pools' idle workers are stopped first. It bounds
    # the memory an engine with many mostly idle services holds doing nothing. Default: a quarter of
    # the machine's MemTotal.
    warm_budget_mb: int = Field(default_factory=lambda: _default_warm_budget_mb(), ge=0)
    warm_budget_workers: int = Field(default=200, ge=0)  # idle workers of all pools at most
    # A pool not called for this long stops its idle workers (unless its service pins min_idle); the
    # next request starts one at once (a cold start).
    scale_to_zero_after_s: float = Field(default=300.0, gt=0)
    # Service images are built after the ports open, this many at once (pip/npm on the host, then
    # `docker build`: CPU and disk the serving engine shares), so start-up does not wait for them all.
    max_parallel_image_builds: int = Field(default=2, ge=1)
    # A request to a service whose image is not built yet waits this long for the build (a cold
    # start), then 503 with Retry-After; the build goes on.
    build_wait_timeout_s: float = Field(default=120.0, gt=0)

    # --- worker resources ---
    memory_mb: int = Field(default=256, ge=32)
    cpus: float = Field(default=0.5, gt=0)
    pids_limit: int | None = Field(default=None, ge=8)  # None: per-backend/runtime default
    nofile_limit: int = Field(default=256, ge=16)
    fsize_mb: int = Field(default=64, ge=1)
    tmpfs_mb: int = Field(default=64, ge=1)

    # --- control API (engine/control/; off unless api_port is set) ---
    api_port: int | None = Field(default=None, ge=0, le=65535)  # its own listener, never the functions port
    data_dir: Path | None = None  # the embedded store (SQLite, WAL) and build directories
    database_url: str | None = None  # any SQLAlchemy async URL instead of the embedded store
    credential_cache_s: float = Field(default=30.0, ge=0)  # a verified token skips argon2 this long (rows still read)
    max_version_bytes: int = Field(default=10 * MiB, gt=0)  # one uploaded version; over it → 413
    max_build_bytes: int = Field(default=100 * MiB, gt=0)  # all versions of one build; over it → 413
    builds_per_hour: int = Field(default=60, ge=1)  # per account; over it → 429 (builds cost CPU and disk)
    max_services_per_account: int = Field(default=50, ge=1)  # over it → 429
    max_environments_per_service: int = Field(default=10, ge=1)  # over it → 429
    # Workers (alive, starting or being removed) across all pools of one account's deployments:
    # one tenant cannot take the machine by spreading load over environments. Over it a request
    # waits (acquire_timeout_s), then 503 naming it.
    max_workers_per_account: int = Field(default=20, ge=1)
    max_log_entries_per_environment: int = Field(default=1000, ge=1)  # Logs kept per environment, newest
    log_retention_s: float = Field(default=86400.0, gt=0)  # Logs older than this are removed
    converge_interval_s: float = Field(default=5.0, gt=0)  # how soon store changes made elsewhere are served
    # On PostgreSQL, other replicas' changes also arrive at once by LISTEN/NOTIFY; false where the
    # connection cannot LISTEN (a transaction-pooling proxy): then converge_interval_s alone.
    converge_listen: bool = True
    # A build being built is leased to its replica, renewed every build_lease_renew_s; a lease not
    # renewed for build_lease_s (the replica died) lets any replica take the build over.
    build_lease_s: float = Field(default=30.0, gt=0)
    build_lease_renew_s: float = Field(default=10.0, gt=0)
    # A dead or frozen database costs a control API request about these at most (then 503, never a
    # hang); deployed functions keep serving either way.
    database_connect_timeout_s: float = Field(default=5.0, gt=0)  # opening a connection, or waiting for a pooled one
    database_command_timeout_s: float = Field(default=10.0, gt=0)  # one SQL statement (PostgreSQL)
    # Handler log lines waiting in memory for the store (slow or down); past either bound new lines
    # are dropped and counted (functions_engine_log_lines_dropped_total), never waited for.
    max_pending_log_lines: int = Field(default=10_000, ge=1)  # all environments together: the memory bound
    max_pending_log_lines_per_environment: int = Field(default=2_000, ge=1)  # one chatty environment cannot take the rest

    services: dict[str, ServiceOverrides] = Field(default_factory=dict)
    # Deployed environments' own settings, by domain name (`[environments."shop-dev.example.com"]`).
    environments: dict[str, EnvironmentOverrides] = Field(default_factory=dict)

    _config_file: ClassVar[Path | None] = None
    _environ: ClassVar[dict[str, str] | None] = None

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        networks = []
        for entry in value:
            try:
                networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network ({exc})") from exc
        return networks

    @field_validator("build_lease_renew_s")
    @classmethod
    def _renewed_within_the_lease(cls, value: float, info: Any) -> float:
        lease = info.data.get("build_lease_s")
        if lease is not None and value >= lease:
            raise ValueError(f"must be shorter than build_lease_s ({lease:g}), or leases run out while their builds run")
        return value

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, ServiceOverrides]) -> dict[str, ServiceOverrides]:
        for name in value:
            if not _SERVICE_NAME.match(name):
                raise ValueError(f"service name {name!r} must be lowercase letters, digits and '-'")
        return value

    @field_validator("environments")
    @classmethod
    def _environment_domains(cls, value: dict[str, EnvironmentOverrides]) -> dict[str, EnvironmentOverrides]:
        named = {}
        for domain, overrides in value.items():
            key = domain.lower().rstrip(".")
            if not _HOSTNAME.match(key):
                raise ValueError(f"environment domain name {domain!r} must be a DNS name (letters, digits, '-', '.')")
            named[key] = overrides
        return named

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _MappingEnvSource(settings_cls, cls._environ) if cls._environ is not None else env_settings
        return (init_settings, env, _FileSource(settings_cls, cls._config_file))

    def overrides_for(self, service: str) -> ServiceOverrides:
        return self.services.get(service) or ServiceOverrides()

    def environment_overrides(self, hostname: str | None) -> EnvironmentOverrides:
        """A deployed environment's own settings by its domain name (none for a folder service)."""
        return (self.environments.get(hostname.lower().rstrip(".")) if hostname else None) or EnvironmentOverrides()


def _default_warm_budget_mb() -> int:
    from engine.warmth import default_warm_budget_mb  # a quarter of MemTotal

    return default_warm_budget_mb()


class _MappingEnvSource(EnvSettingsSource):
    """`ENGINE_*` variables from a given mapping instead of os.environ (tests, embedding)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str]) -> None:
        self._given = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Any:
        return {key.lower(): value for key, value in self._given.items()}


class _FileSource(PydanticBaseSettingsSource):
    """Reads the `--config` file (TOML by extension `.toml`, YAML otherwise)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data = read_config_file(path) if path else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a config file into a dict, with errors that name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings at the top level")
    return data


def load_settings(cli: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Build the settings from CLI values (None = not given), the environment and the config file."""
    environ = dict(os.environ if environ is None else environ)
    given = {key: value for key, value in cli.items() if value is not None}
    config_path = given.get("config") or environ.get("ENGINE_CONFIG")
    Settings._config_file = Path(config_path) if config_path else None
    Settings._environ = environ
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, Settings._config_file)) from exc
    finally:
        Settings._config_file = None
        Settings._environ = None


def describe_validation_error(exc: ValidationError, path: Path | None) -> str:
    """One line per bad key: where it came from, the key, the reason, the bad value."""
    where = f" (config file {path}, ENGINE_* variables or flags)" if path else " (ENGINE_* variables or flags)"
    lines = [f"invalid settings{where}:"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {key}: {error['msg']}{shown}")
    return "\n".join(lines)
