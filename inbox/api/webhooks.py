"""Webhook endpoints: verify, store, answer 202; a task ingests (``inbox/services/webhooks.py``).

``POST /webhooks/generic/<source_id>/`` (documented in docs/connectors/generic.md):

* 404 unknown or disabled source, or a source of another platform (one answer for all three);
* 413 body over ``WEBCARE["WEBHOOK_MAX_BYTES"]`` (nothing stored, a log line);
* 403 signature missing, forged, or timestamp outside the tolerance (a warning log line);
* 400 ``X-Webcare-Delivery`` longer than 200 characters;
* 202 stored (also for a replayed delivery id, and for a body we will reject when parsing it:
  the sender signed it, so the reason is kept on the delivery for an operator instead).

``GET|POST /webhooks/meta/`` (one endpoint for every Page and Instagram account of the app,
docs/connectors/meta.md):

* 404 when the deployment has no ``META_APP_SECRET``/``META_VERIFY_TOKEN`` (switched off);
* GET: the subscription handshake: 200 with ``hub.challenge`` as plain text when
  ``hub.verify_token`` matches, else 403;
* POST: 413 over the size limit; 403 when ``X-Hub-Signature-256`` is missing or is not the
  app secret's HMAC of the raw body (a warning log line); else 200 and stored without a
  source: the task routes each entry to the source with that Page or Instagram account id.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from inbox.connectors.base import SignatureRefused
from inbox.connectors.registry import UnknownPlatform, get_connector, get_webhook_app
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
    except SignatureRefused as exc:
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


@csrf_exempt
@require_http_methods(["GET", "POST"])
def meta_webhook(request: HttpRequest) -> HttpResponse:
    app = get_webhook_app("meta")
    if app is None or not app.configured():
        logger.warning(
            "webhook: Meta %s from %s refused: META_APP_SECRET and META_VERIFY_TOKEN are not set",
            request.method,
            request.META.get("REMOTE_ADDR", "?"),
        )
        return JsonResponse({"detail": "Meta webhooks are not configured on this desk"}, status=404)
    if request.method == "GET":
        try:
            challenge = app.verify_subscription(request.GET)
        except SignatureRefused as exc:
            logger.warning("webhook: Meta subscription handshake refused from %s: %s",
                           request.META.get("REMOTE_ADDR", "?"), exc)
            return JsonResponse({"detail": f"verification refused: {exc}"}, status=403)
        logger.info("webhook: Meta subscription handshake answered")
        return HttpResponse(challenge, content_type="text/plain; charset=utf-8")

    what = "Meta delivery"
    limit = webhook_max_bytes()
    body = read_body(request, limit)
    if body is None:
        return _too_large(request, what, limit)
    try:
        app.verify(body, request.headers)
    except SignatureRefused as exc:
        logger.warning("webhook: %s refused from %s: %s", what, request.META.get("REMOTE_ADDR", "?"), exc)
        return JsonResponse({"detail": f"signature refused: {exc}"}, status=403)
    delivery, _created = webhook_delivery_receive(
        source=None, platform=app.name, body=body, headers=request.headers
    )
    # Meta wants 200 and retries anything else; the delivery is stored, a task ingests it.
    return JsonResponse({"delivery": delivery.pk, "state": delivery.state}, status=200)


urlpatterns = [
    path("generic/<int:source_id>/", generic_webhook, name="webhook-generic"),
    path("meta/", meta_webhook, name="webhook-meta"),
]
