"""The shipped migrations: numbered, named, loadable."""

from __future__ import annotations

from runstream.consumers import shipped_migrations


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    migrations = shipped_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "init"
    assert all(len(m.checksum) == 64 for m in migrations)
