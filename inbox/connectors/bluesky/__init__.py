"""Bluesky (AT Protocol): mentions, replies and quotes in; threaded replies out.

Importing the package registers ``BlueskyConnector`` for ``Platform.BLUESKY`` sources.
"""

from inbox.connectors.bluesky.connector import BlueskyConnector  # noqa: F401

__all__ = ["BlueskyConnector"]
