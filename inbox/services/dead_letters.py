"""Operator actions on dead letters (inbound items ingest could not store)."""

from __future__ import annotations

from django.db import transaction

from inbox.models import DeadLetter

# Keeps each UPDATE's IN (...) list well under SQLite's bound-parameter limit.
_CHUNK = 500


def dead_letters_mark_resolved(*, ids: list[int]) -> int:
    """Mark the dead letters with these ids resolved. Returns how many were unresolved before."""
    unique_ids = sorted(set(ids))
    updated = 0
    with transaction.atomic():
        for start in range(0, len(unique_ids), _CHUNK):
            chunk = unique_ids[start : start + _CHUNK]
            updated += DeadLetter.objects.filter(pk__in=chunk, resolved=False).update(resolved=True)
    return updated
