"""Data model of the desk, one module per area (see docs/architecture in shared/)."""

from .contacts import Contact, Customer
from .desk import TicketSeen
from .escalations import Escalation, InternalTeam
from .events import TicketEvent
from .ingest import DeadLetter
from .messages import Message
from .outbox import DeliveryAttempt, OutboundDelivery
from .queues import AgentProfile, Queue
from .routing import RoutingRule
from .sla import BusinessCalendar, BusinessHours, CalendarHoliday, SlaPolicy
from .sources import Platform, Source
from .templates import ReplyTemplate, ReplyTemplateVariant
from .tickets import Tag, Ticket
from .webhooks import WebhookDelivery

__all__ = [
    "BusinessCalendar",
    "BusinessHours",
    "CalendarHoliday",
    "Escalation",
    "InternalTeam",
    "RoutingRule",
    "SlaPolicy",
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
    "TicketSeen",
    "WebhookDelivery",
]
