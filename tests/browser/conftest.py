"""Browser end-to-end fixtures: the real ASGI server and Debian's chromium via Playwright.

The desk runs as it does in production (uvicorn serving ``webcare.asgi``, WebSockets
through channels_redis on the suite's Redis) on the test database, in its own process.
Tests that use it need committed data, so they run with ``transactional_db``.
A failing test leaves a screenshot of every open page in ``var/browser-failures/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.threads import off_loop
from tests.processes import stop_process
from webcare.devtools.redis_server import free_port
from webcare.devtools.screenshot import CHROMIUM_ARGS, chromium_path

# Playwright's sync API keeps an event loop in this thread; the ORM calls of the test
# itself are still plain synchronous calls between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

BASE_DIR = Path(settings.BASE_DIR)
FAILURES = BASE_DIR / "var" / "browser-failures"


@pytest.fixture(scope="session")
def desk_server(django_db_setup, django_db_blocker) -> Iterator[str]:
    """Base URL of a uvicorn serving the desk on the test database."""
    port = free_port()
    log = BASE_DIR / "var" / f"test-desk-{os.getpid()}.log"
    env = dict(os.environ)
    env["WEBCARE_DATABASE_NAME"] = str(settings.DATABASES["default"]["NAME"])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "webcare.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--ws", "websockets"],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"desk server not ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an event loop in the main
    # thread while it runs, and asgiref refuses async_to_sync there (channels tests).
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def open_contexts() -> list[BrowserContext]:
    return []


@pytest.fixture
def new_page(
    browser: Browser, desk_server: str, open_contexts: list[BrowserContext], request, redis_client
) -> Iterator[Callable[..., Page]]:
    """``new_page(user=None)``: a page in a fresh browser context (its own cookies),
    signed in as ``user`` when given. JavaScript errors and CSP violations fail the test."""
    problems: list[str] = []
    users: list[int] = []

    def make(user=None, *, width: int = 1280, height: int = 800) -> Page:
        context = browser.new_context(base_url=desk_server, viewport={"width": width, "height": height})
        context.set_default_timeout(15_000)
        open_contexts.append(context)
        if user is not None:
            users.append(user.pk)
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": _session_for(user),
                                  "url": desk_server}])
        page = context.new_page()
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error" else None)
        return page

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        FAILURES.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        for n, context in enumerate(open_contexts):
            for m, page in enumerate(context.pages):
                page.screenshot(path=str(FAILURES / f"{name}-{n}-{m}.png"), full_page=True)
    for context in open_contexts:
        context.close()
    _wait_for_disconnects(users)
    # A WebSocket closed by the server at teardown logs a console error: only check passing tests.
    if not failed:
        assert problems == [], problems


def _wait_for_disconnects(user_ids: list[int], timeout: float = 20.0) -> None:
    """Until the server has handled every closed socket of these users.

    Closing a socket makes the server write presence and collision state; the test's
    database flush (TRUNCATE on PostgreSQL) must not race those writes, or PostgreSQL
    breaks the tie with a deadlock error.

    What is still there after ``timeout`` (a disconnect the server has not finished) is
    expired as beat does in production, once, with a line on stdout; anything left after
    that is a TimeoutError.
    """
    from inbox.models import AgentProfile
    from inbox.services.presence import _conns_key, presence_expire, redis_client

    client = redis_client()

    def left() -> dict[int, list[str]]:
        return {pk: [m.decode() for m in client.zrange(_conns_key(pk), 0, -1)] for pk in user_ids}

    def not_offline() -> dict[int, str]:
        return off_loop(lambda: dict(AgentProfile.objects.filter(user_id__in=user_ids)
                                     .exclude(presence=AgentProfile.Presence.OFFLINE)
                                     .values_list("user_id", "presence")))

    def wait() -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The socket is gone from Redis, and the presence write that follows has committed.
            if not any(left().values()) and not not_offline():
                return True
            time.sleep(0.05)
        return False

    if wait():
        return
    # A disconnect the server has not finished: expire it as beat does in production, once.
    print(f"browser teardown: connections {left()} and presence {not_offline()} left "
          f"{timeout}s after the pages closed; expiring them")
    off_loop(presence_expire, now=timezone.now() + timedelta(days=1))
    if wait():
        return
    raise TimeoutError(
        f"desk sockets of users {user_ids} still open {timeout}s after their pages closed: "
        f"connections left in Redis {left()}, presence not offline {not_offline()}"
    )


def _session_for(user) -> str:
    """A signed-in session for ``user``, as the login view would create it."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
