import pytest

from webcare.devtools.redis_server import free_port

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_backends(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_ok_with_database_and_redis(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_fails_when_redis_is_down(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ConnectionError")


def test_ticket_list_requires_login_and_scopes_to_queues(client, source):
    from inbox.services.ingest import ingest_batch
    from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

    assert client.get("/").status_code == 302
    other_queue = QueueFactory(name="Other")
    ingest_batch(source=source, messages=[inbound("v1", text="visible <script>alert(1)</script>")])
    ingest_batch(source=SourceFactory(name="o", default_queue=other_queue),
                 messages=[inbound("h1", text="hidden from anna")])
    agent = AgentProfileFactory().user
    source.default_queue.members.add(agent)
    client.force_login(agent)
    html = client.get("/").content.decode()
    assert "visible &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert "hidden from anna" not in html
