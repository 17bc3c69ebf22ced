"""App-level webhook deliveries (one endpoint, many sources): routing by account, what is
said on the delivery when a part has no source, and processing again after connecting it.

A small app registered by the test routes ``{"accounts": {<account id>: <generic body>}}`` to
generic sources by account id, so the routing in ``inbox.services.webhooks`` is tested apart
from any one platform (Meta's own routing is tested in tests/connectors/test_meta.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from inbox.connectors import registry
from inbox.connectors.base import InvalidWebhook, RoutedDelivery, WebhookApp, WebhookPart
from inbox.models import DeadLetter, Message, WebhookDelivery
from inbox.services.webhooks import (
    webhook_deliveries_reprocess,
    webhook_delivery_process,
    webhook_delivery_receive,
)
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db


class AccountsApp(WebhookApp):
    name = "accounts-test"
    platforms = ("generic",)

    def configured(self) -> bool:
        return True

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        return params["challenge"]

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        return None

    def route(self, body: bytes) -> RoutedDelivery:
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise InvalidWebhook(f"not JSON: {exc}") from None
        parts = [
            WebhookPart("generic", account, json.dumps(part).encode(), summary=f"account {account}")
            for account, part in document.get("accounts", {}).items()
        ]
        return RoutedDelivery(parts=parts, ignored=list(document.get("skipped", [])))


@pytest.fixture(autouse=True)
def accounts_app(monkeypatch):
    registry._registry()
    monkeypatch.setitem(registry._WEBHOOK_APPS, AccountsApp.name, AccountsApp)


def item(external_id: str, text: str = "Waar is mijn koffer? 🧳") -> dict:
    return {
        "id": external_id,
        "author": {"id": f"cust-{external_id}", "handle": "reiziger"},
        "text": text,
        "created_at": "2026-11-27T08:00:00+00:00",
    }


def receive(document: dict) -> WebhookDelivery:
    delivery, created = webhook_delivery_receive(
        source=None, platform=AccountsApp.name, body=json.dumps(document).encode(), headers={}
    )
    assert created
    return delivery


@pytest.fixture
def page_a(default_queue):
    return SourceFactory(name="page A", platform="generic", account_id="A", default_queue=default_queue,
                         secrets={"webhook_secret": "x"})


@pytest.fixture
def page_b(default_queue):
    return SourceFactory(name="page B", platform="generic", account_id="B", default_queue=default_queue,
                         secrets={"webhook_secret": "x"})


def test_each_part_is_ingested_by_the_source_of_its_account(page_a, page_b):
    delivery = receive({"accounts": {"A": {"messages": [item("a1"), item("a2")]},
                                     "B": {"messages": [item("b1")]}}})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"

    by_source = sorted(Message.objects.values_list("source__name", "external_id"))
    assert by_source == [("page A", "a1"), ("page A", "a2"), ("page B", "b1")]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.error, delivery.source) == ("processed", "", None)


def test_a_part_without_a_source_is_said_and_the_rest_ingested(page_a):
    delivery = receive({"accounts": {"A": {"messages": [item("a1")]}, "Z": {"messages": [item("z1")]}}})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"

    assert list(Message.objects.values_list("external_id", flat=True)) == ["a1"]
    delivery.refresh_from_db()
    assert delivery.error == "not ingested: account Z: no generic source has account id Z"


def test_nothing_claimed_is_rejected_and_processing_again_after_connecting_ingests_once(default_queue):
    delivery = receive({"accounts": {"C": {"messages": [item("c1"), item("c2")]}}})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert delivery.error == "not ingested: account C: no generic source has account id C"
    assert Message.objects.count() == 0

    SourceFactory(name="page C", platform="generic", account_id="C", default_queue=default_queue)
    assert webhook_deliveries_reprocess(delivery_ids=[delivery.pk]) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.error) == ("received", "")
    assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"
    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["c1", "c2"]

    # Again: ingest is idempotent, nothing is doubled.
    webhook_deliveries_reprocess(delivery_ids=[delivery.pk])
    assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"
    assert Message.objects.count() == 2
    delivery.refresh_from_db()
    assert delivery.attempts == 3


def test_reprocess_leaves_waiting_deliveries_alone(page_a):
    delivery = receive({"accounts": {"A": {"messages": [item("a1")]}}})
    assert webhook_deliveries_reprocess(delivery_ids=[delivery.pk, 404_404]) == 0


def test_a_disabled_source_is_named(page_a):
    page_a.enabled = False
    page_a.save()
    delivery = receive({"accounts": {"A": {"messages": [item("a1")]}}})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert delivery.error == "not ingested: account A: source 'page A' is disabled"


def test_the_enabled_source_wins_over_a_disabled_one_of_the_same_account(page_a, default_queue):
    page_a.enabled = False
    page_a.save()
    SourceFactory(name="page A (new)", platform="generic", account_id="A", default_queue=default_queue)
    delivery = receive({"accounts": {"A": {"messages": [item("a1")]}}})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"
    assert Message.objects.get().source.name == "page A (new)"


def test_an_unreadable_part_is_said_and_others_go_on(page_a, page_b):
    delivery = receive({"accounts": {"A": {"tickets": []}, "B": {"messages": [item("b1"), {"id": "b2"}]}},
                        "skipped": ["account B: 3 reactions"]})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"

    assert list(Message.objects.values_list("external_id", flat=True)) == ["b1"]
    assert DeadLetter.objects.get().external_id == "b2"
    delivery.refresh_from_db()
    assert delivery.error == (
        'not ingested: account A: unknown event shape: expected a "messages" list, got keys: tickets\n'
        "1 of 2 items dead-lettered: messages[1]: author is missing\n"
        "ignored: account B: 3 reactions"
    )


def test_an_unreadable_body_is_rejected_with_the_apps_reason(page_a):
    delivery, _ = webhook_delivery_receive(source=None, platform=AccountsApp.name, body=b"{", headers={})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert delivery.error.startswith("not JSON: ")


def test_a_delivery_of_an_unknown_app_without_source_is_rejected(db):
    delivery, _ = webhook_delivery_receive(source=None, platform="nobody", body=b"{}", headers={})

    assert webhook_delivery_process(delivery_id=delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert delivery.error == "the delivery has no source (deleted?)"
