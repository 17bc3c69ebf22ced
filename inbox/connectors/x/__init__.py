"""X (API v2): public mentions of the brand in, threaded replies out.

Importing the package registers ``XConnector`` for ``Platform.X`` sources.
"""

from inbox.connectors.x.connector import XConnector  # noqa: F401

__all__ = ["XConnector"]
