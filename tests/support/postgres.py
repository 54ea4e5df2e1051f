"""A real PostgreSQL for tests: a fresh, uniquely named database per use, dropped afterwards.

Where the server comes from, in order:

1. ``TILLTAP_TEST_PG_DSN`` (an admin URL such as ``postgresql://postgres@host:5432/postgres``):
   it must answer, otherwise the tests fail with a clear error;
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` if a server answers there;
3. a private cluster started for the test run (initdb + pg_ctl from /usr/lib/postgresql/*/bin,
   as user postgres through ``runuser`` when running as root, on a free port with its own
   socket directory), stopped and deleted at the end.

Under pytest-xdist (`make test`'s workers), a worker with ``TILLTAP_TEST_PG_DSN`` unset
starts the private cluster of 3. for itself at its first use, and names it in that variable.

If none of these works, `PostgresUnavailable` is raised: tests never skip PostgreSQL silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ADMIN_DSN_ENV = "TILLTAP_TEST_PG_DSN"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_PROBE_TIMEOUT_S = 3
PG_COMMAND_TIMEOUT_S = 120
CLUSTER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be reached or started: the PostgreSQL tests cannot run."""


@contextmanager
def temporary_database(admin_dsn: str | None = None) -> Iterator[str]:
    """Yield the DSN of a freshly created, uniquely named database; drop it (FORCE) afterwards."""
    if admin_dsn is None:
        with postgres_server() as server_dsn, _fresh_database(server_dsn) as dsn:
            yield dsn
    else:
        with _fresh_database(admin_dsn) as dsn:
            yield dsn


_worker_lock = threading.Lock()
_worker_cluster: ExitStack | None = None


def _worker_server() -> None:
    """Under pytest-xdist, with TILLTAP_TEST_PG_DSN unset: the worker's own private cluster,
    started at its first use and named in TILLTAP_TEST_PG_DSN (for the processes tests start
    too) until `stop_worker_server`. The card feed holds back what other write transactions
    on the same server may still commit before it (docs/ledger.md "Card feed"): on a shared
    server one worker's transactions would hold back another's feed tests."""
    global _worker_cluster
    with _worker_lock:
        if _worker_cluster is not None or os.environ.get(ADMIN_DSN_ENV):
            return
        stack = ExitStack()
        os.environ[ADMIN_DSN_ENV] = stack.enter_context(private_cluster())
        _worker_cluster = stack


def stop_worker_server() -> None:
    """Stop and remove the worker's private cluster, if it started one."""
    global _worker_cluster
    with _worker_lock:
        stack, _worker_cluster = _worker_cluster, None
        if stack is not None:
            os.environ.pop(ADMIN_DSN_ENV, None)
            stack.close()


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin DSN of a server that answers (see the module docstring for which)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _worker_server()
    configured = os.environ.get(ADMIN_DSN_ENV)
    if configured:
        problem = _probe(configured)
        if problem:
            raise PostgresUnavailable(
                f"{ADMIN_DSN_ENV}={_redacted(configured)} does not answer: {problem}"
            )
        yield configured
        return
    if _probe(DEFAULT_ADMIN_DSN) is None:
        yield DEFAULT_ADMIN_DSN
        return
    with private_cluster() as dsn:
        yield dsn


@contextmanager
def _fresh_database(admin_dsn: str) -> Iterator[str]:
    """CREATE DATABASE with a unique name, yield its DSN, then DROP ... WITH (FORCE)."""
    import psycopg

    name = f"tilltap_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=PG_PROBE_TIMEOUT_S) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(admin_dsn, name)
    finally:
        with psycopg.connect(
            admin_dsn, autocommit=True, connect_timeout=PG_PROBE_TIMEOUT_S
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def private_cluster() -> Iterator[str]:
    """Start a throw-away cluster on a free loopback port, yield its admin DSN, then remove it."""
    bin_dir = _postgres_bin_dir()
    root, data, sockets, log, port = _cluster_place("tilltap-pg-")
    started = False
    try:
        _run_as_cluster_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                CLUSTER_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
        _run_as_cluster_user(
            [str(bin_dir / "pg_ctl"), "-w", "-D", str(data), "-l", str(log), "-o", options, "start"]
        )
        started = True
        yield f"postgresql://{CLUSTER_USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run_as_cluster_user(
                [str(bin_dir / "pg_ctl"), "-w", "-D", str(data), "-m", "fast", "stop"]
            )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def replicated_pair() -> Iterator[tuple[str, str, Callable[[], None]]]:
    """A throw-away primary and its hot standby (PostgreSQL's streaming replication, the
    standby made by pg_basebackup -R), each on a free loopback port: yields their admin DSNs
    and a function that stops the standby; both are removed afterwards."""
    bin_dir = _postgres_bin_dir()
    with private_cluster() as primary:
        port = int(urlsplit(primary).port or 0)
        root, data, sockets, log, standby_port = _cluster_place("tilltap-pg-standby-")
        running = False

        def stop() -> None:
            nonlocal running
            if running:
                running = False
                _run_as_cluster_user(
                    [str(bin_dir / "pg_ctl"), "-w", "-D", str(data), "-m", "fast", "stop"])

        try:
            _run_as_cluster_user([str(bin_dir / "pg_basebackup"), "-D", str(data), "-R",
                                  "-h", "127.0.0.1", "-p", str(port), "-U", CLUSTER_USER,
                                  "-X", "stream"])
            options = (f"-p {standby_port} -k {sockets} -c listen_addresses=127.0.0.1"
                       " -c hot_standby=on")
            _run_as_cluster_user([str(bin_dir / "pg_ctl"), "-w", "-D", str(data), "-l",
                                  str(log), "-o", options, "start"])
            running = True
            yield primary, f"postgresql://{CLUSTER_USER}@127.0.0.1:{standby_port}/postgres", stop
        finally:
            stop()
            shutil.rmtree(root, ignore_errors=True)


def _cluster_place(prefix: str) -> tuple[Path, Path, Path, Path, int]:
    """A new folder for a cluster, the postgres user's (root, data, sockets, log) and a free
    port for it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    data, sockets, log = root / "data", root / "sock", root / "server.log"
    sockets.mkdir()
    _hand_to_cluster_user(root)
    return root, data, sockets, log, _free_port()


def _probe(dsn: str) -> str | None:
    """None if the server answers SELECT 1, else why not."""
    try:
        import psycopg
    except ImportError:
        raise PostgresUnavailable(
            "psycopg 3 is not installed: pip install 'psycopg[binary]'"
        ) from None
    try:
        with psycopg.connect(
            dsn, autocommit=True, connect_timeout=PG_PROBE_TIMEOUT_S
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip() or type(error).__name__
    return None


def _with_database(admin_dsn: str, name: str) -> str:
    """The admin URL with its database name replaced."""
    parts = urlsplit(admin_dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise PostgresUnavailable(f"{ADMIN_DSN_ENV} must be a postgresql:// URL")
    return urlunsplit(parts._replace(path=f"/{name}"))


def _redacted(dsn: str) -> str:
    """A DSN safe to print: the password, if any, replaced."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def _postgres_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    candidates = sorted(
        (Path(path) for path in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise PostgresUnavailable(
        f"no PostgreSQL server at {DEFAULT_ADMIN_DSN}, {ADMIN_DSN_ENV} unset, and no initdb under"
        " /usr/lib/postgresql/*/bin to start one (apt-get install postgresql)"
    )


def _hand_to_cluster_user(root: Path) -> None:
    """As root, the cluster must belong to the postgres user (initdb refuses to run as root)."""
    if os.geteuid() != 0:
        return
    try:
        shutil.chown(root, CLUSTER_USER, CLUSTER_USER)
        shutil.chown(root / "sock", CLUSTER_USER, CLUSTER_USER)
    except LookupError as error:
        raise PostgresUnavailable(f"running as root but there is no {CLUSTER_USER} user") from error


def _run_as_cluster_user(command: list[str]) -> None:
    """Run a PostgreSQL tool, through runuser when root; a failure raises with its output."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", CLUSTER_USER, "--", *command]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=PG_COMMAND_TIMEOUT_S, check=False, cwd="/"
    )
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(command)} failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


def _free_port() -> int:
    """A loopback TCP port free right now (the cluster binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
