"""Generic webhook: a documented JSON format, HMAC-signed, for any other platform or an
in-house system (e-mail gateway, web form, chat widget). See docs/connectors/generic.md.

Importing the package registers ``GenericConnector`` for ``Platform.GENERIC`` sources.
"""

from inbox.connectors.generic.connector import GenericConnector  # noqa: F401

__all__ = ["GenericConnector"]
