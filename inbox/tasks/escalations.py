"""E-mail to back-office teams: send the escalation, retry while the mail server may recover."""

from __future__ import annotations

import logging
import random
import smtplib

from celery import shared_task
from django.conf import settings
from redis.exceptions import RedisError

from inbox.services.escalations import (
    EscalationError,
    escalation_email_failed,
    escalation_email_send,
    smtp_error_is_permanent,
)

logger = logging.getLogger(__name__)

#: Retries after the first attempt before the failure is recorded for the agent.
DEFAULT_MAX_RETRIES = 6
#: First retry after about this many seconds, doubling each time (with jitter).
DEFAULT_RETRY_SECONDS = 60.0
_RETRY_CAP_SECONDS = 3600.0
#: Wait before looking again when another worker is sending the same e-mail.
BUSY_RETRY_SECONDS = 60.0


def retry_delay(retries: int) -> float:
    """Exponential back-off with jitter: about 1, 2, 4 … minutes, at most an hour."""
    base = float(getattr(settings, "ESCALATION_EMAIL_RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
    return random.uniform(0.5, 1.0) * min(_RETRY_CAP_SECONDS, base * 2**retries)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None, ignore_result=True)
def send_escalation_email(self, escalation_id: int) -> str:
    """Send one escalation's e-mail. Safe to run twice: it is sent once (see the service)."""
    max_retries = int(getattr(settings, "ESCALATION_EMAIL_MAX_RETRIES", DEFAULT_MAX_RETRIES))
    try:
        outcome = escalation_email_send(escalation_id=escalation_id)
    except EscalationError as exc:  # the desk's configuration, e.g. the reply address: retrying won't help
        escalation_email_failed(escalation_id=escalation_id, error=f"not sent: {exc}")
        return "failed"
    except (smtplib.SMTPException, OSError, RedisError) as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        if smtp_error_is_permanent(exc):
            escalation_email_failed(
                escalation_id=escalation_id, error=f"refused by the mail server: {reason}"
            )
            return "failed"
        if self.request.retries >= max_retries:
            escalation_email_failed(
                escalation_id=escalation_id,
                error=f"gave up after {self.request.retries + 1} attempts: {reason}",
            )
            return "failed"
        logger.info(
            "escalation %s: e-mail attempt %s failed, retrying: %s",
            escalation_id,
            self.request.retries + 1,
            reason,
        )
        raise self.retry(exc=exc, countdown=retry_delay(self.request.retries)) from exc
    if outcome == "busy" and self.request.retries < max_retries:
        # Another worker holds the send lock; if it died, the lock expires and this copy sends.
        raise self.retry(countdown=BUSY_RETRY_SECONDS)
    return outcome
