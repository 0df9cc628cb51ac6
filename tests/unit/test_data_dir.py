"""``weir standalone``'s data directory is private: 0700, its database and secrets 0600."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from weir.cli import _standalone_settings
from weir.config import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_its_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / ".weir"
    previous = os.umask(0o022)
    try:
        settings = _standalone_settings(Settings(_env_file=None, data_dir=data))  # type: ignore[call-arg]
        database = Path(settings.database_url.removeprefix("sqlite+aiosqlite:///"))
        with sqlite3.connect(database) as connection:  # WAL: SQLite makes -wal and -shm files
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE t (x)")
            wal = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
            assert all(p.exists() for p in wal)
            modes = {p.name: mode(p) for p in [database, *wal]}
    finally:
        os.umask(previous)
    assert mode(data) == 0o700
    assert modes == {"weir.db": 0o600, "weir.db-wal": 0o600, "weir.db-shm": 0o600}
    for name in ("secret_key", "admin_token", "admin_password"):
        assert mode(data / name) == 0o600, name


def test_an_existing_world_readable_data_dir_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / ".weir"
    data.mkdir(mode=0o755)
    (data / "weir.db").write_bytes(b"")
    (data / "weir.db").chmod(0o644)
    (data / "secret_key").write_text("an-old-secret-key-of-some-length")
    (data / "secret_key").chmod(0o644)

    settings = _standalone_settings(Settings(_env_file=None, data_dir=data))  # type: ignore[call-arg]

    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "an-old-secret-key-of-some-length"
    assert (mode(data), mode(data / "weir.db"), mode(data / "secret_key")) == (0o700, 0o600, 0o600)
