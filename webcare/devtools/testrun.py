"""Run the test suite with its own Redis on a free port (``make test``).

Everything after ``--`` goes to pytest. DATABASE_URL is passed through, so the same
command runs the suite on SQLite (default) or PostgreSQL (CI).
"""

from __future__ import annotations

import os
import subprocess
import sys

from webcare.devtools.redis_server import BASE_DIR, free_port, start_redis


def main(argv: list[str]) -> int:
    port = free_port()
    redis = start_redis(port, BASE_DIR / "var" / "redis-test")
    env = dict(
        os.environ,
        REDIS_URL=f"redis://127.0.0.1:{port}/0",
        CHANNELS_PREFIX=f"test{port}",
        WEBCARE_TEST_RUN_ID=f"_{port}",
    )
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *argv], env=env, cwd=BASE_DIR)
    finally:
        redis.terminate()
        redis.wait(timeout=10)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    sys.exit(main(args))
