"""Meta: Facebook Page comments, Messenger and Instagram, through one app webhook.
See docs/connectors/meta.md.

Importing the package registers ``FacebookConnector``, ``MessengerConnector`` and
``InstagramConnector`` and the ``meta`` webhook app.
"""

from inbox.connectors.meta import connector, webhook  # noqa: F401
from inbox.connectors.meta.connector import (  # noqa: F401
    FacebookConnector,
    InstagramConnector,
    MessengerConnector,
)
from inbox.connectors.meta.webhook import MetaWebhookApp  # noqa: F401

__all__ = ["FacebookConnector", "InstagramConnector", "MessengerConnector", "MetaWebhookApp"]
