"""Smoke test of the embedded default: ``make run`` from a clean state, as a person would.

Starts ``make run`` in its own process group, waits for /healthz, waits until the demo
source has produced at least one ticket, checks /readyz, then presses Ctrl-C (SIGINT to
the group) and checks that every child is gone and the ports are free again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("SMOKE_PORT", "8000"))
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6390"))


def _get(path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            print(f"smoke: {what}: ok", flush=True)
            return
        time.sleep(1)
    raise SystemExit(f"smoke: FAILED: {what} not seen within {timeout:.0f}s")


def _healthy() -> bool:
    try:
        return _get("/healthz")[0] == 200
    except OSError:
        return False


def _ticket_count() -> int:
    out = subprocess.run(
        [str(BASE_DIR / ".venv/bin/python"), "manage.py", "shell", "-c",
         "from inbox.models import Ticket; print(Ticket.objects.count())"],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=60,
    )
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else -1


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _leftovers(pgid: int) -> list[str]:
    """Processes of the run still alive: in its process group, or started in this checkout."""
    found = []
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        pid, group, *args = line.split(None, 2)
        if int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        command = " ".join(args)
        ours = cwd == str(BASE_DIR) and any(
            name in command for name in ("celery", "uvicorn", "redis-server", "honcho")
        )
        if group == str(pgid) or ours:
            found.append(line)
    return found


def main() -> int:
    log_path = BASE_DIR / "var" / "smoke-run.log"
    log_path.parent.mkdir(exist_ok=True)
    env = dict(os.environ, PORT=str(PORT))
    with log_path.open("w") as log:
        proc = subprocess.Popen(["make", "run"], cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    pgid = proc.pid
    try:
        _wait("/healthz answers", _healthy, 300)
        status, body = _get("/readyz")
        print(f"smoke: /readyz {status} {body.decode()}", flush=True)
        if status != 200 or json.loads(body)["status"] != "ok":
            raise SystemExit("smoke: FAILED: /readyz not ready")
        started = time.monotonic()
        _wait("demo source created a ticket", lambda: _ticket_count() > 0, 60)
        print(f"smoke: first ticket after {time.monotonic() - started:.1f}s of serving", flush=True)
    except BaseException:
        print(log_path.read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        os.killpg(pgid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("smoke: FAILED: make run did not stop within 60s of Ctrl-C", file=sys.stderr)
            os.killpg(pgid, signal.SIGKILL)
            return 1
    time.sleep(2)
    leftovers = _leftovers(pgid)
    if leftovers:
        print("smoke: FAILED: processes left after Ctrl-C:\n" + "\n".join(leftovers), file=sys.stderr)
        return 1
    for port in (PORT, REDIS_PORT):
        if not _port_free(port):
            print(f"smoke: FAILED: port {port} still in use after stop", file=sys.stderr)
            return 1
    print("smoke: clean stop, no processes left, ports free", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
