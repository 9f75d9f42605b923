"""Versioned SQL migrations (`migrations/NNNN_name.sql`), applied by `runstream db upgrade`.

`schema_migrations` records each applied version with a checksum of its file. An upgrade runs in
one transaction that first takes a transaction-scoped advisory lock, so two processes upgrading at
once apply each migration exactly once (the second waits, then finds nothing to do), and a failed
migration leaves the database as it was. Changing a file after it was applied is refused.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from runstream._config import DatabaseConfig
from runstream._errors import ConfigError, TransportError

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql\Z")
_LOCK_KEY = 0x72756E73747265  # "runstre": this project's advisory lock
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(ConfigError):
    """The database's applied migrations disagree with the files shipped."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations() -> list[Migration]:
    """Every migration in the package, by version."""
    folder = resources.files("runstream.consumers").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


async def upgrade(config: DatabaseConfig, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations not applied yet; return their names (empty when up to date)."""
    migrations = shipped_migrations() if migrations is None else migrations
    conn = await _connect(config)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(_CREATE_TABLE)
            return await _apply_pending(conn, migrations)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    applied = {row["version"]: row for row in rows}
    done = []
    for migration in migrations:
        row = applied.get(migration.version)
        if row is not None:
            _check_unchanged(migration, row)
            continue
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            migration.version,
            migration.name,
            migration.checksum,
        )
        done.append(f"{migration.version:04d}_{migration.name}")
    return done


def _check_unchanged(migration: Migration, row: asyncpg.Record) -> None:
    if row["checksum"] != migration.checksum:
        raise MigrationError(
            f"migration {migration.version:04d}_{migration.name} was applied with another text "
            f"(checksum {row['checksum'][:12]}…, file {migration.checksum[:12]}…): released "
            "migrations never change; add a new one"
        )


async def applied_versions(config: DatabaseConfig) -> list[int]:
    """Versions recorded in `schema_migrations` (empty on a fresh database)."""
    conn = await _connect(config)
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return []
        return [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()


async def _connect(config: DatabaseConfig) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(config.url, timeout=10.0)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise TransportError(f"cannot connect to PostgreSQL: {exc}", retriable=True) from exc
