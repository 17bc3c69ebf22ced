"""Simulated demo platform: seeded airline webcare traffic and a fake place to reply.

Registers ``SimulatedConnector`` for ``Platform.SIMULATED`` sources.
"""

from inbox.connectors.registry import register
from inbox.connectors.simulated.connector import SimulatedConnector

register(SimulatedConnector)

__all__ = ["SimulatedConnector"]
