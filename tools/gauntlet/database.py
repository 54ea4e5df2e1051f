"""The ledger's database as the gauntlet sees it: a PostgreSQL database of its own
(`gauntlet_<seed>_<pid>`, created on the server of an admin DSN and dropped at the end) or a
SQLite file; read directly with the drivers (batches for a timed kill, the transactions
and holds for the tally: the ledger's tables, not its code), and made to refuse
(PostgreSQL only: connections, or writes).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CONNECT_TIMEOUT_S = 5


class GauntletDatabase:
    """The ledger's books; `dsn` is what the ledger is started with."""

    def __init__(self, admin_dsn: str | None, workdir: Path, seed: int) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"gauntlet_{seed}_{os.getpid()}"
        self.sqlite_path = workdir / "ledger.db"
        if admin_dsn is None:
            self.dsn = f"sqlite://{self.sqlite_path}"
            return
        parts = urlsplit(admin_dsn)
        self.dsn = urlunsplit(parts._replace(path=f"/{self.name}"))
        with self._admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.name}"')

    @property
    def postgres(self) -> bool:
        return self.admin_dsn is not None

    def _admin(self) -> Any:
        import psycopg

        assert self.admin_dsn is not None
        return psycopg.connect(self.admin_dsn, autocommit=True,
                               connect_timeout=CONNECT_TIMEOUT_S)

    def read(self, sql: str) -> list[tuple[Any, ...]]:
        """One query on a connection of its own (a fault may have ended any earlier one)."""
        if self.admin_dsn is None:
            uri = f"file:{self.sqlite_path}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
                return db.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S) as connection:
            return [tuple(row) for row in connection.execute(sql).fetchall()]

    def batches(self) -> int:
        """How many batches the ledger took (-1 while it cannot be read)."""
        try:
            return int(self.read("SELECT COUNT(*) FROM batches")[0][0])
        except Exception:  # noqa: BLE001 (either driver's error: not readable now)
            return -1

    def _terminate_sessions(self, admin: Any) -> None:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,))

    def refuse_connections(self, refuse: bool) -> None:
        with self._admin() as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS '
                          f'{"false" if refuse else "true"}')
            if refuse:
                self._terminate_sessions(admin)

    def read_only(self, read_only: bool) -> None:
        """Writes refused (every new session read-only), or allowed again; the sessions
        open are ended either way so that the next ones take the setting."""
        with self._admin() as admin:
            if read_only:
                admin.execute(f'ALTER DATABASE "{self.name}"'
                              " SET default_transaction_read_only = on")
            else:
                admin.execute(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')
            self._terminate_sessions(admin)

    def drop(self) -> None:
        if self.admin_dsn is None:
            return
        with self._admin() as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
