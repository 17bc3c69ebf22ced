"""The generic webhook signature: ``X-Webcare-Signature: sha256=<hex>``.

The signed payload is the raw body, or ``<timestamp>.<raw body>`` when the sender adds
``X-Webcare-Timestamp`` (Unix seconds). A timestamped signature is valid for
``TOLERANCE_SECONDS`` either side of our clock, so an old body cannot be replayed; the
timestamp cannot be stripped either, because the signature covers it.
"""

from __future__ import annotations

import hashlib
import hmac

from inbox.connectors.base import SignatureRefused

SIGNATURE_HEADER = "X-Webcare-Signature"
TIMESTAMP_HEADER = "X-Webcare-Timestamp"
DELIVERY_HEADER = "X-Webcare-Delivery"
PREFIX = "sha256="
TOLERANCE_SECONDS = 300


def signed_payload(body: bytes, timestamp: str = "") -> bytes:
    return f"{timestamp}.".encode("ascii") + body if timestamp else body


def sign(secret: str, body: bytes, timestamp: str = "") -> str:
    """The header value for ``body`` (and ``timestamp`` when given)."""
    digest = hmac.new(secret.encode("utf-8"), signed_payload(body, timestamp), hashlib.sha256).hexdigest()
    return PREFIX + digest


def verify(
    secret: str,
    body: bytes,
    *,
    signature: str | None,
    timestamp: str | None,
    now: float,
    require_timestamp: bool = False,
) -> None:
    """Raise SignatureRefused unless ``signature`` is the HMAC of the payload and fresh enough."""
    if not secret:
        raise SignatureRefused("the source has no webhook_secret configured")
    if not signature:
        raise SignatureRefused(f"{SIGNATURE_HEADER} header is missing")
    timestamp = (timestamp or "").strip()
    if timestamp:
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise SignatureRefused(f"{TIMESTAMP_HEADER} must be Unix seconds (digits only)")
        skew = now - int(timestamp)
        if abs(skew) > TOLERANCE_SECONDS:
            raise SignatureRefused(
                f"{TIMESTAMP_HEADER} is {int(abs(skew))}s {'old' if skew > 0 else 'in the future'} "
                f"(tolerance {TOLERANCE_SECONDS}s)"
            )
    elif require_timestamp:
        raise SignatureRefused(f"{TIMESTAMP_HEADER} header is missing and this source requires it")
    if not hmac.compare_digest(
        sign(secret, body, timestamp).encode("ascii"), signature.strip().encode("utf-8")
    ):
        raise SignatureRefused(f"{SIGNATURE_HEADER} does not match the body")
