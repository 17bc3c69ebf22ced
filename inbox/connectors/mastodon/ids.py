"""Mastodon status and notification ids.

Ids are strings of digits (snowflake-like, but remote software may send other shapes);
they are never parsed as numbers. A longer id is newer; ids of one length compare as text.
"""

from __future__ import annotations

from collections.abc import Iterable


def id_key(value: str) -> tuple[int, str]:
    """Sort key: by length, then lexically."""
    return (len(value), value)


def is_newer(candidate: str, than: str) -> bool:
    """True when ``candidate`` comes after ``than`` (an empty ``than`` is older than anything)."""
    return id_key(candidate) > id_key(than)


def newest(ids: Iterable[str]) -> str:
    """The newest of ``ids``; empty when there are none."""
    best = ""
    for value in ids:
        if value and is_newer(value, best):
            best = value
    return best
