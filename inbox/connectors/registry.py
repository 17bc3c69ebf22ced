"""Platform name → connector class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inbox.connectors.base import Connector

if TYPE_CHECKING:
    from inbox.models import Source

_REGISTRY: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    _REGISTRY[cls.platform] = cls
    return cls


def _load_builtin() -> None:
    # Imported here so each connector package registers itself once.
    from inbox.connectors import simulated  # noqa: F401


class UnknownPlatform(LookupError):
    pass


def _registry() -> dict[str, type[Connector]]:
    if not _REGISTRY:
        _load_builtin()
    return _REGISTRY


def webhook_only_platforms() -> list[str]:
    """Platforms whose connectors only receive webhooks: never polled."""
    return [name for name, cls in _registry().items() if not cls.supports_polling]


def get_connector(source: Source) -> Connector:
    _registry()
    try:
        cls = _REGISTRY[source.platform]
    except KeyError:
        raise UnknownPlatform(f"no connector for platform {source.platform!r}") from None
    return cls(source)
