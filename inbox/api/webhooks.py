"""Webhook endpoints: verify, store, answer 202; a task ingests (``inbox/services/webhooks.py``).

``POST /webhooks/generic/<source_id>/`` (documented in docs/connectors/generic.md):

* 404 unknown or disabled source, or a source of another platform (one answer for all three);
* 413 body over ``WEBCARE["WEBHOOK_MAX_BYTES"]`` (nothing stored, a log line);
* 403 signature missing, forged, or timestamp outside the tolerance (a warning log line);
* 400 ``X-Webcare-Delivery`` longer than 200 characters;
* 202 stored (also for a replayed delivery id, and for a body we will reject when parsing it:
  the sender signed it, so the reason is kept on the delivery for an operator instead).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from inbox.connectors.base import PermanentError
from inbox.connectors.registry import UnknownPlatform, get_connector
from inbox.models import Platform, Source
from inbox.services.webhooks import webhook_delivery_receive, webhook_max_bytes

logger = logging.getLogger(__name__)

DELIVERY_HEADER = "X-Webcare-Delivery"
_DELIVERY_ID_MAX = 200


def read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is longer than ``limit`` (read no further than that)."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _too_large(request: HttpRequest, what: str, limit: int) -> JsonResponse:
    logger.warning(
        "webhook: %s refused, body over %d bytes (Content-Length %s) from %s",
        what,
        limit,
        request.headers.get("Content-Length", "?"),
        request.META.get("REMOTE_ADDR", "?"),
    )
    return JsonResponse({"detail": f"body is larger than {limit} bytes"}, status=413)


@csrf_exempt
@require_POST
def generic_webhook(request: HttpRequest, source_id: int) -> JsonResponse:
    source = Source.objects.filter(pk=source_id, platform=Platform.GENERIC, enabled=True).first()
    if source is None:
        return JsonResponse({"detail": "no such webhook source"}, status=404)
    what = f"generic delivery for source {source.pk}"
    limit = webhook_max_bytes()
    body = read_body(request, limit)
    if body is None:
        return _too_large(request, what, limit)

    try:
        connector = get_connector(source)
    except UnknownPlatform:
        logger.error("webhook: %s dropped: the generic connector is not registered", what)
        return JsonResponse({"detail": "webhooks of this platform are not available"}, status=503)
    try:
        connector.verify_webhook(body, request.headers)
    except PermanentError as exc:  # the connector's SignatureRefused
        logger.warning("webhook: %s refused from %s: %s", what, request.META.get("REMOTE_ADDR", "?"), exc)
        return JsonResponse({"detail": f"signature refused: {exc}"}, status=403)

    delivery_id = request.headers.get(DELIVERY_HEADER, "").strip()
    if len(delivery_id) > _DELIVERY_ID_MAX:
        return JsonResponse(
            {"detail": f"{DELIVERY_HEADER} is longer than {_DELIVERY_ID_MAX} characters"}, status=400
        )
    delivery, created = webhook_delivery_receive(
        source=source,
        platform=Platform.GENERIC,
        body=body,
        headers=request.headers,
        delivery_id=delivery_id,
        delivery_header=DELIVERY_HEADER,
    )
    return JsonResponse(
        {"delivery": delivery.pk, "state": delivery.state, "duplicate": not created}, status=202
    )


urlpatterns = [
    path("generic/<int:source_id>/", generic_webhook, name="webhook-generic"),
]
