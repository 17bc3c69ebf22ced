"""Mastodon: mentions and direct messages of the brand account in, threaded replies out.

Importing the package registers ``MastodonConnector`` for ``Platform.MASTODON`` sources.
"""

from inbox.connectors.mastodon.connector import MastodonConnector
from inbox.connectors.registry import register

register(MastodonConnector)

__all__ = ["MastodonConnector"]
