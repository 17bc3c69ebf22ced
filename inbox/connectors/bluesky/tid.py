"""Record keys for the brand's posts, derived from the delivery so a repeat never posts twice.

Bluesky takes no idempotency key, but ``com.atproto.repo.createRecord`` takes the record
key (``rkey``), and a repository holds one record per key. ``app.bsky.feed.post`` records
are keyed by TID (timestamp identifier): 13 characters of base32-sortable encoding a
64-bit number, top bit 0, then 53 bits of microseconds since the epoch and 10 bits of
"clock id". We take the microseconds from the moment the reply was stored and the clock
id from the idempotency key, so every attempt of one delivery uses the same key and two
deliveries collide only when stored in the same microsecond with the same 10-bit hash.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_MAX_MICROS = 2**53 - 1


def encode_tid(micros: int, clock_id: int) -> str:
    if not 0 <= micros <= _MAX_MICROS or not 0 <= clock_id < 1024:
        raise ValueError(f"TID parts out of range: {micros}, {clock_id}")
    number = (micros << 10) | clock_id
    chars = []
    for _ in range(13):
        chars.append(_ALPHABET[number & 31])
        number >>= 5
    return "".join(reversed(chars))


def is_tid(value: str) -> bool:
    return (
        len(value) == 13
        and all(char in _ALPHABET for char in value)
        and value[0] in _ALPHABET[:16]  # the top bit is 0
    )


def tid_for(idempotency_key: uuid.UUID | str, stored_at: datetime | None) -> str:
    """The record key of the post made for one delivery (same inputs, same key)."""
    digest = hashlib.sha256(str(idempotency_key).encode()).digest()
    clock_id = int.from_bytes(digest[:2], "big") % 1024
    if stored_at is not None:
        micros = int(stored_at.timestamp()) * 1_000_000 + stored_at.microsecond
    else:
        # No time known (an unsaved row): still deterministic, from the key alone.
        micros = int.from_bytes(digest[2:9], "big") % (_MAX_MICROS + 1)
    return encode_tid(micros, clock_id)
