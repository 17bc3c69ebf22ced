"""A throwaway PostgreSQL cluster on loopback for CI, tests and benchmarks.

    python -m webcare.devtools.postgres start --dir var/pg [--port 5433]
    python -m webcare.devtools.postgres stop --dir var/pg
    python -m webcare.devtools.postgres destroy --dir var/pg

``start`` creates the cluster when DIR holds none, starts it listening on
127.0.0.1:PORT only, waits until it accepts connections, makes the ``webcare``
role (LOGIN, CREATEDB: the test runner creates its own databases) and database,
and prints one line, the DATABASE_URL: ``postgres://webcare@127.0.0.1:PORT/webcare``.
Starting a running cluster prints its URL again. Without ``--port`` the cluster
keeps the port it had, or gets a free one the first time.

Layout of the cluster home: ``data/`` (PGDATA), ``socket/`` (the only unix socket
directory), ``postgres.log``. Authentication is ``trust`` on 127.0.0.1 and on that
socket, nothing else listens. Durability settings are PostgreSQL's defaults
(fsync, synchronous_commit, full_page_writes all on), so benchmarks are honest.

PostgreSQL refuses to run as root. Run as root, every server command goes through
``runuser -u postgres`` and the home is owned by ``postgres``. If ``postgres``
cannot reach DIR (a checkout under ``/root`` is mode 0700), the home moves to
``/tmp/webcare-pg-<hash of DIR>`` and ``DIR/cluster`` is a symlink to it, so the
log is still found from DIR. Run as any other user, the commands run directly and
the home is DIR.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROLE = "webcare"
DATABASE = "webcare"
SUPERUSER = "postgres"
SERVER_USER = "postgres"
HOST = "127.0.0.1"
FALLBACK_PREFIX = "webcare-pg-"
LINK_NAME = "cluster"

# Appended to postgresql.conf by us; rewritten on every start so the port can change.
_CONF_FILE = "webcare.conf"
_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "shared_buffers": "'256MB'",
    # Fewer forced checkpoints while a benchmark prefills; durability unchanged.
    "max_wal_size": "'2GB'",
    "max_connections": "100",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


class ClusterError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says why."""


def bindir() -> Path:
    """Directory of the server binaries: ``pg_config --bindir``, else the newest Debian install."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(found.stdout.strip())
        if found.returncode == 0 and (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()]
    if not candidates:
        raise ClusterError("no PostgreSQL server binaries: neither pg_config nor /usr/lib/postgresql/*/bin")
    return max(candidates, key=lambda p: _version_key(p.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise ClusterError(f"running as root needs a '{SERVER_USER}' system user to run the server") from exc


def _run(args: list[str], *, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """Run a server command, as ``postgres`` when we are root."""
    argv = ["runuser", "-u", SERVER_USER, "--", *args] if _as_root() else args
    # cwd "/": the caller's directory may be unreadable for postgres (e.g. /root/...).
    proc = subprocess.run(argv, cwd="/", capture_output=capture, text=True, check=False)
    if check and proc.returncode != 0:
        raise ClusterError(
            f"{' '.join(args)} failed with exit code {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc


def _give_to_server(path: Path) -> None:
    if _as_root():
        account = _server_account()
        os.chown(path, account.pw_uid, account.pw_gid)


def _reachable_by_server(path: Path) -> bool:
    if not _as_root():
        return True
    return (
        _run(["test", "-r", str(path), "-a", "-w", str(path), "-a", "-x", str(path)], check=False).returncode
        == 0
    )


def _fallback_home(dir: Path) -> Path:
    digest = hashlib.sha256(str(dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"{FALLBACK_PREFIX}{digest}"


def cluster_home(dir: str | os.PathLike, *, create: bool = True) -> Path:
    """Where the cluster of DIR lives: DIR itself, or its /tmp fallback when postgres cannot reach DIR."""
    dir = Path(dir).absolute()
    link = dir / LINK_NAME
    if link.is_symlink():
        home = Path(os.readlink(link))
        if create and not home.exists():  # /tmp was cleaned: start over there
            home.mkdir(mode=0o700)
            _give_to_server(home)
        return home
    if not create:
        return dir
    dir.mkdir(parents=True, exist_ok=True)
    _give_to_server(dir)
    if _reachable_by_server(dir):
        return dir
    home = _fallback_home(dir)
    home.mkdir(mode=0o700, exist_ok=True)
    _give_to_server(home)
    link.symlink_to(home)
    return home


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    # Two starts at once (parallel CI jobs on one DIR) must not both run initdb.
    with open(home / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def database_url(port: int) -> str:
    return f"postgres://{ROLE}@{HOST}:{port}/{DATABASE}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _running_port(data: Path) -> int | None:
    """Port of the running postmaster, from postmaster.pid (None when it is not running)."""
    if not (data / "PG_VERSION").exists():
        return None
    status = _run([str(bindir() / "pg_ctl"), "-D", str(data), "status"], check=False)
    if status.returncode != 0:
        return None
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError) as exc:
        raise ClusterError(f"cannot read the port of the running server from {data}/postmaster.pid") from exc


def _configured_port(data: Path) -> int | None:
    try:
        for line in (data / _CONF_FILE).read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
    except (OSError, ValueError):
        return None
    return None


def _initdb(home: Path, data: Path) -> None:
    if data.exists() and any(data.iterdir()):
        raise ClusterError(f"{data} is not empty and holds no cluster (no PG_VERSION): refusing to touch it")
    data.mkdir(mode=0o700, exist_ok=True)
    _give_to_server(data)
    locale = ["--locale=C.UTF-8"] if _has_c_utf8() else ["--no-locale"]
    _run(
        [
            str(bindir() / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            *locale,
            "--auth-local=trust",
            "--auth-host=trust",
        ]
    )
    _write_as_server(
        data / "pg_hba.conf",
        "# Throwaway cluster: trust on its private socket and on 127.0.0.1, nothing else.\n"
        "local   all   all                 trust\n"
        "host    all   all   127.0.0.1/32  trust\n",
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\ninclude_if_exists = '{_CONF_FILE}'\n")


def _has_c_utf8() -> bool:
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    return any(name.lower().replace("-", "") == "c.utf8" for name in listed.stdout.split())


def _write_as_server(path: Path, text: str) -> None:
    path.write_text(text)
    _give_to_server(path)
    path.chmod(0o600)


def _write_settings(home: Path, data: Path, port: int) -> None:
    socket_dir = home / "socket"
    socket_dir.mkdir(mode=0o700, exist_ok=True)
    _give_to_server(socket_dir)
    settings = {**_SETTINGS, "port": str(port), "unix_socket_directories": f"'{socket_dir}'"}
    _write_as_server(data / _CONF_FILE, "".join(f"{key} = {value}\n" for key, value in settings.items()))


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    pg_isready = str(bindir() / "pg_isready")
    deadline = time.monotonic() + timeout
    while True:
        ready = subprocess.run(
            [pg_isready, "-q", "-h", HOST, "-p", str(port), "-U", SUPERUSER, "-d", "postgres"], check=False
        )
        if ready.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"PostgreSQL on {HOST}:{port} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def _psql(port: int, query: str) -> str:
    # psql over TCP as the superuser (trust): no runuser needed, no Python driver needed.
    done = subprocess.run(
        [
            str(bindir() / "psql"),
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            str(port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-c",
            query,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"psql failed on {query!r}: {done.stderr.strip()}")
    return done.stdout.strip()


def _ensure_role_and_database(port: int) -> None:
    if not _psql(port, f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'"):
        _psql(port, f'CREATE ROLE "{ROLE}" LOGIN CREATEDB')
    if not _psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"):
        _psql(port, f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"')


def ensure_cluster(dir: str | os.PathLike, port: int | None = None) -> str:
    """Create (if needed) and start the cluster of DIR; return its DATABASE_URL.

    Already running: returns the URL, unless it runs on another port than ``port``.
    """
    home = cluster_home(dir)
    data = home / "data"
    with _locked(home):
        running = _running_port(data)
        if running is not None:
            if port is not None and port != running:
                raise ClusterError(f"the cluster in {home} runs on port {running}, not {port}: stop it first")
            _ensure_role_and_database(running)
            return database_url(running)
        if not (data / "PG_VERSION").exists():
            _initdb(home, data)
        if port is None:
            port = _configured_port(data) or free_port()
        _write_settings(home, data, port)
        log = home / "postgres.log"
        if not log.exists():
            log.touch()
            _give_to_server(log)
        started = _run(
            [str(bindir() / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"],
            check=False,
        )
        if started.returncode != 0:
            raise ClusterError(f"pg_ctl start failed ({started.returncode}); last log lines:\n{_tail(log)}")
        _wait_ready(port)
        _ensure_role_and_database(port)
        return database_url(port)


def stop_cluster(dir: str | os.PathLike) -> None:
    """Stop the cluster of DIR (fast shutdown). Stopping a stopped or missing cluster is fine."""
    home = cluster_home(dir, create=False)
    data = home / "data"
    if not home.exists() or _running_port(data) is None:
        return
    _run([str(bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"])


def destroy_cluster(dir: str | os.PathLike) -> None:
    """Stop the cluster of DIR and delete its files (its /tmp home included), keeping DIR."""
    dir = Path(dir).absolute()
    home = cluster_home(dir, create=False)
    stop_cluster(dir)
    for name in ("data", "socket", "postgres.log", ".lock"):
        path = home / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    link = dir / LINK_NAME
    if link.is_symlink():
        link.unlink()
        if home.exists():
            shutil.rmtree(home)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(log unreadable: {exc})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m webcare.devtools.postgres", description="A throwaway PostgreSQL cluster on loopback."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="create if needed, start, print the DATABASE_URL")
    start.add_argument("--dir", type=Path, required=True)
    start.add_argument("--port", type=int, default=None)
    for name, help_ in (("stop", "stop the server (fast)"), ("destroy", "stop and delete the cluster")):
        commands.add_parser(name, help=help_).add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(ensure_cluster(args.dir, args.port))
        elif args.command == "stop":
            stop_cluster(args.dir)
        else:
            destroy_cluster(args.dir)
    except ClusterError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
