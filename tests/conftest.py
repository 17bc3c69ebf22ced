"""Shared fixtures: real Redis (started by ``make test``), a real Celery worker process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from redis import Redis

from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory
from tests.processes import stop_process

BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return settings.REDIS_URL


@pytest.fixture
def redis_client(redis_url: str):
    """A client on the suite's Redis, with the app's keys removed before and after the test."""
    client = Redis.from_url(redis_url)

    def clear() -> None:
        for key in client.scan_iter(match="webcare:*", count=1000):
            client.delete(key)

    clear()
    yield client
    clear()
    client.close()


@pytest.fixture
def default_queue(db):
    return QueueFactory(name="General", slug="general", is_default=True)


@pytest.fixture
def source(db, default_queue):
    return SourceFactory(name="demo", default_queue=default_queue)


def _wait_for_worker(proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    from webcare.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {proc.returncode}:\n{log.read_text()}")
        if app.control.ping(timeout=0.5):
            return
    raise TimeoutError(f"celery worker not ready after {timeout}s:\n{log.read_text()}")


@pytest.fixture
def celery_worker_env() -> dict[str, str]:
    """Extra environment for the worker process (a test module overrides this fixture, e.g.
    for settings the worker must share with the test, like Meta's app secret)."""
    return {}


@pytest.fixture
def celery_worker(django_db_setup, django_db_blocker, celery_worker_env):
    """A real ``celery worker`` process on the test database and the suite's Redis.

    Tests that use it need committed data: mark them ``transactional_db``. One worker
    per test, stopped before the test's tables are flushed: a worker still running
    tasks (or retries waiting for their time) would race the flush, and other
    transactional tests must not have their after-commit tasks picked up at all.
    """
    from webcare.celery import app

    app.control.purge()
    log = BASE_DIR / "var" / f"test-worker-{os.getpid()}.log"
    log.parent.mkdir(exist_ok=True)
    env = dict(os.environ)
    env["WEBCARE_DATABASE_NAME"] = str(settings.DATABASES["default"]["NAME"])
    env["POLL_BACKOFF_BASE_SECONDS"] = "0.2"
    env.update(celery_worker_env)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webcare", "worker", "-Q", "ingest,outbound,default",
             "-P", "solo", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h",
             "--loglevel", "INFO"],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_worker(proc, log)
        yield proc
    finally:
        stop_process(proc)


@pytest.fixture
def scripted(db, default_queue, redis_client):
    """A source on the scripted platform and that platform's script."""
    from tests import scripted as module

    platform = module.install()
    platform.source = SourceFactory(name="scripted", platform="scripted", default_queue=default_queue)
    return platform


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's deliberate slowness buys nothing in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _default_language():
    # A request through the test client activates the agent's language in this thread and
    # nothing deactivates it: without this, a Dutch agent's request makes later tests Dutch.
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fresh_sla_config():
    # Test transactions roll back and never commit, so the per-process SLA cache is
    # never told to reload: start every test from the database.
    from inbox.selectors.sla import forget_sla_config

    forget_sla_config()
    yield
    forget_sla_config()


# --- People of the escalation tests (services, e-mail, API) -----------------------------------


@pytest.fixture
def anna(default_queue):
    """An agent of the default queue, who has the ticket."""
    user = AgentProfileFactory(user__username="anna", user__first_name="Anna", user__last_name="de Vries").user
    default_queue.members.add(user)
    return user


@pytest.fixture
def experts_queue(db):
    return QueueFactory(name="Baggage experts", slug="baggage-experts")


@pytest.fixture
def expert(experts_queue):
    """A back-office expert working in the desk, member of the experts' queue only."""
    user = AgentProfileFactory(user__username="piet", user__first_name="Piet", user__last_name="Smit").user
    experts_queue.members.add(user)
    return user


@pytest.fixture
def outsider(db):
    """An agent of another queue: sees none of this."""
    user = AgentProfileFactory(user__username="olaf").user
    QueueFactory(name="Other", slug="other").members.add(user)
    return user


def pytest_collection_modifyitems(session, config, items):
    # Everything under tests/browser/ drives chromium. Browser tests run last: they are the
    # slowest, and everything else has run when one fails.
    browser_dir = BASE_DIR / "tests" / "browser"
    for item in items:
        if browser_dir in item.path.parents:
            item.add_marker(pytest.mark.browser)
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
