"""Store URLs as operators give them, and as they are printed: never with the password."""

from __future__ import annotations

import pytest

from engine.control.store import database_url, describe, mask_url, normalise_url


@pytest.mark.parametrize(("given", "used"), [
    ("postgresql://u:p@db:5432/engine", "postgresql+asyncpg://u:p@db:5432/engine"),
    ("postgres://u:p@db/engine?ssl=require", "postgresql+asyncpg://u:p@db/engine?ssl=require"),
    ("postgresql+asyncpg://u:p@db/engine", "postgresql+asyncpg://u:p@db/engine"),
])
def test_plain_postgres_urls_get_the_async_driver(given: str, used: str) -> None:
    assert normalise_url(given) == used == database_url(None, given)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+asyncpg://engine:hunter2-long@db:5432/engine", "postgresql+asyncpg://engine:***@db:5432/engine"),
    ("postgresql+asyncpg://engine:p%40ss%3Aw0rd@db/engine", "postgresql+asyncpg://engine:***@db/engine"),
    ("postgresql://engine:hunter2-long@db:notaport/engine", "postgresql://engine:***@db:notaport/engine"),
    ("postgresql+asyncpg://engine@db/engine", "postgresql+asyncpg://engine@db/engine"),
])
def test_a_printed_url_never_shows_its_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "hunter2" not in mask_url(url) and "w0rd" not in mask_url(url)


def test_where_a_store_is_names_host_and_database_or_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert describe("postgresql+asyncpg://u:secret@db.internal:6432/engine") == "db.internal:6432/engine"
    assert describe(database_url(tmp_path, None)) == str(tmp_path.resolve() / "engine.db")


def test_a_url_that_cannot_be_parsed_is_refused_without_its_password() -> None:
    from engine.control.store import StoreError

    with pytest.raises(StoreError) as refused:
        database_url(None, "postgresql://engine:hunter2-long@db:notaport/engine")
    assert "hunter2" not in str(refused.value) and "engine:***@db:notaport" in str(refused.value)
