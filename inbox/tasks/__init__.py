"""Celery tasks: thin wrappers that load by id and call a service."""

from inbox.tasks import outbound, polling

__all__ = ["outbound", "polling"]
