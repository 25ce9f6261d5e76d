"""A PostgreSQL URL as the asyncpg driver takes it through SQLAlchemy.

SQLAlchemy hands every query parameter of the URL to `asyncpg.connect()` as a keyword argument.
Managed services and operators write TLS the libpq way, `?sslmode=require`, which asyncpg does not
take as an argument (`connect() got an unexpected keyword argument 'sslmode'`); its `ssl=` takes
the same mode names. So `sslmode` becomes `ssl` here, and libpq's certificate-file parameters,
which asyncpg reads only from its environment, are refused with the variable to set instead.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from engine.errors import ConfigError

#: libpq's sslmode values; asyncpg's `ssl=` accepts the same names.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: libpq parameters naming files, and the environment variable asyncpg reads each from.
FILE_PARAMETERS = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
}


def for_asyncpg(url: str) -> str:
    """`url` with `sslmode=` spelled `ssl=`; unchanged when it has neither, so nothing else moves."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database_url is not a valid database URL ({exc}); "
                          "expected postgresql://USER:PASSWORD@HOST:5432/DATABASE?ssl=require") from None
    query = dict(parsed.query)
    for name, variable in FILE_PARAMETERS.items():
        if name in query:
            raise ConfigError(
                f"database_url: the asyncpg driver does not take `{name}=` in the URL; remove it and set "
                f"{variable}=<path> in the engine's environment instead (asyncpg reads it from there)")
    if "sslmode" not in query:
        return url
    mode = query.pop("sslmode")
    if isinstance(mode, tuple) or mode not in SSL_MODES:
        raise ConfigError(f"database_url: sslmode={mode!r} is not one of {', '.join(SSL_MODES)}")
    if "ssl" in query and query["ssl"] != mode:
        raise ConfigError(f"database_url gives both sslmode={mode} and ssl={query['ssl']}: keep one (ssl=)")
    query["ssl"] = mode
    return parsed.set(query=query).render_as_string(hide_password=False)
