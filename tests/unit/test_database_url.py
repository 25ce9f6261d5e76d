"""The store's PostgreSQL URL as operators write it (libpq's `sslmode=`) reaches asyncpg as `ssl=`."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from engine.control.store import database_url
from engine.errors import ConfigError

PASSWORD = "p@ss:w/rd%?&="


def connect_args(url: str) -> dict[str, object]:
    """What SQLAlchemy would hand asyncpg.connect() for this URL."""
    db = create_async_engine(url)
    try:
        return db.dialect.create_connect_args(make_url(url))[1]
    finally:
        asyncio.run(db.dispose())


def test_plain_url_gets_the_driver_and_nothing_else_changes() -> None:
    url = f"postgresql://fe:{quote(PASSWORD, safe='')}@db.example:5432/fe?ssl=require"
    assert database_url(None, url) == "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    assert database_url(None, "postgres://fe@db/fe") == "postgresql+asyncpg://fe@db/fe"


@pytest.mark.parametrize("mode", ["disable", "prefer", "require", "verify-ca", "verify-full"])
def test_libpq_sslmode_becomes_asyncpg_ssl(mode: str) -> None:
    url = database_url(None, f"postgresql://fe:{quote(PASSWORD, safe='')}@db.example:5432/fe?sslmode={mode}&application_name=engine")
    args = connect_args(url)
    assert args["ssl"] == mode and "sslmode" not in args
    assert args["password"] == PASSWORD and args["host"] == "db.example" and args["database"] == "fe"
    assert args["application_name"] == "engine"


def test_certificate_file_parameters_are_refused_with_the_variable_to_set() -> None:
    with pytest.raises(ConfigError) as caught:
        database_url(None, f"postgresql://fe:{quote(PASSWORD, safe='')}@db/fe?sslmode=verify-full&sslrootcert=/etc/ca.crt")
    assert "PGSSLROOTCERT" in str(caught.value) and "sslrootcert" in str(caught.value)
    assert quote(PASSWORD, safe="") not in str(caught.value) and PASSWORD not in str(caught.value)


@pytest.mark.parametrize("query", ["sslmode=required", "sslmode=require&ssl=disable", "sslmode=require&sslmode=disable"])
def test_a_bad_or_conflicting_sslmode_is_refused(query: str) -> None:
    with pytest.raises(ConfigError, match="sslmode"):
        database_url(None, f"postgresql://fe:secret@db/fe?{query}")


def test_libpq_sslmode_url_reaches_a_real_server_as_asyncpg_ssl(pg_url: str) -> None:
    """`sslmode=disable` connects; `sslmode=require` reaches the server as a TLS request (this test
    server has no TLS, so it refuses the upgrade), not a TypeError about an unknown argument."""

    async def ssl_in_use(url: str) -> object:
        db = create_async_engine(database_url(None, url))
        try:
            async with db.connect() as conn:
                return (await conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).scalar()
        finally:
            await db.dispose()

    sep = "&" if "?" in pg_url else "?"
    assert asyncio.run(ssl_in_use(f"{pg_url}{sep}sslmode=disable")) is False
    with pytest.raises(Exception) as caught:
        asyncio.run(ssl_in_use(f"{pg_url}{sep}sslmode=require"))
    assert not isinstance(caught.value, TypeError), caught.value
    assert "SSL" in str(caught.value), caught.value
