"""Platform name → connector class."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inbox.connectors.base import Connector, WebhookApp

if TYPE_CHECKING:
    from inbox.models import Source

_REGISTRY: dict[str, type[Connector]] = {}
_WEBHOOK_APPS: dict[str, type[WebhookApp]] = {}
_builtin_loaded = False


def register(cls: type[Connector]) -> type[Connector]:
    _REGISTRY[cls.platform] = cls
    return cls


def register_webhook_app(cls: type[WebhookApp]) -> type[WebhookApp]:
    """Register an app-level webhook endpoint (one endpoint, many sources)."""
    _WEBHOOK_APPS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Imported here so each connector package registers itself once.
    from inbox.connectors import bluesky, generic, mastodon, meta, simulated, x  # noqa: F401


class UnknownPlatform(LookupError):
    pass


def _registry() -> dict[str, type[Connector]]:
    # A flag, not "is the registry empty": a connector imported on its own (a test, a
    # plugin) must not hide the built-in ones.
    global _builtin_loaded
    if not _builtin_loaded:
        _load_builtin()
        _builtin_loaded = True
    return _REGISTRY


def webhook_only_platforms() -> list[str]:
    """Platforms whose connectors only receive webhooks: never polled."""
    return [name for name, cls in _registry().items() if not cls.supports_polling]


def get_webhook_app(name: str) -> WebhookApp | None:
    """The app-level webhook endpoint called ``name`` (``"meta"``), or None."""
    _registry()
    cls = _WEBHOOK_APPS.get(name)
    return cls() if cls is not None else None


def get_connector(source: Source) -> Connector:
    _registry()
    try:
        cls = _REGISTRY[source.platform]
    except KeyError:
        raise UnknownPlatform(f"no connector for platform {source.platform!r}") from None
    return cls(source)
