"""Data model of the desk, one module per area (see docs/architecture in shared/)."""

from .contacts import Contact, Customer
from .events import TicketEvent
from .ingest import DeadLetter
from .messages import Message
from .outbox import DeliveryAttempt, OutboundDelivery
from .queues import AgentProfile, Queue
from .sources import Platform, Source
from .templates import ReplyTemplate, ReplyTemplateVariant
from .tickets import Tag, Ticket

__all__ = [
    "AgentProfile",
    "Contact",
    "Customer",
    "DeadLetter",
    "DeliveryAttempt",
    "Message",
    "OutboundDelivery",
    "Platform",
    "Queue",
    "ReplyTemplate",
    "ReplyTemplateVariant",
    "Source",
    "Tag",
    "Ticket",
    "TicketEvent",
]
