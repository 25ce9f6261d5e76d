"""The `context` argument: built-ins overlaid by the service's `.env`, plus the REST client helper."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import twilio.rest

BUILT_INS = ("PATH", "DOMAIN_NAME", "SERVICE_SID", "ENVIRONMENT_SID")


class MissingCredentialsError(Exception):
    """The service's .env has no ACCOUNT_SID/AUTH_TOKEN, so no REST client can be built."""


def twilio_client(env: Mapping[str, Any], caller: str, **options: Any) -> twilio.rest.Client:
    """A REST client from the service's own credentials (never from the process environment)."""
    account_sid, auth_token = env.get("ACCOUNT_SID"), env.get("AUTH_TOKEN")
    if not account_sid or not auth_token:
        raise MissingCredentialsError(f"{caller}: ACCOUNT_SID and AUTH_TOKEN must be set in the service's .env")
    options.setdefault("environment", {})  # do not let the library read TWILIO_* from os.environ
    import twilio.rest  # imported on first use or while idle (see preload.py): it is half the bootstrap

    return twilio.rest.Client(account_sid, auth_token, **options)


class Context:
    """`context.DOMAIN_NAME`, `context["MY_VAR"]`, `getattr(context, "X", default)`, `context.get_twilio_client()`.

    Values live in a dict, not in attributes, so a variable named like a helper never hides it.
    """

    def __init__(self, built_ins: Mapping[str, Any], env: Mapping[str, Any]) -> None:
        values = {key: value for key, value in built_ins.items() if isinstance(key, str)}
        values.update(env)  # .env overrides the built-ins
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_values":  # copy/pickle probing a half-built object
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"context has no {name!r} (not a built-in and not in the service's .env)") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def keys(self) -> list[str]:
        return list(self._values)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def get_twilio_client(self, **options: Any) -> twilio.rest.Client:
        """A REST client built from ACCOUNT_SID/AUTH_TOKEN; raises MissingCredentialsError without them."""
        return twilio_client(self._values, "context.get_twilio_client()", **options)

    getTwilioClient = get_twilio_client

    def __repr__(self) -> str:
        return f"<context {sorted(self._values)}>"
