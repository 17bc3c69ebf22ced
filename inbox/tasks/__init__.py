"""Celery tasks: thin wrappers that load by id and call a service."""

from inbox.tasks import assignment, escalations, outbound, polling, sla, webhooks

__all__ = ["assignment", "escalations", "outbound", "polling", "sla", "webhooks"]
