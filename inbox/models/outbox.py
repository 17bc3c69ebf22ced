import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class OutboundDelivery(models.Model):
    """The outbox row of one agent reply: what must be posted, and how it went."""

    class State(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    message = models.OneToOneField(
        "inbox.Message", on_delete=models.CASCADE, related_name="delivery"
    )
    source = models.ForeignKey("inbox.Source", on_delete=models.PROTECT, related_name="deliveries")
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0)
    # An attempt ended without knowing whether the platform posted (timeout):
    # the next attempt must look the post up before posting again.
    outcome_unknown = models.BooleanField(default=False)
    last_error = models.TextField(blank=True)
    platform_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("outbound delivery")
        verbose_name_plural = _("outbound deliveries")
        indexes = [models.Index(fields=["state", "created_at"])]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.state})"


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENT = "sent", _("Sent")
        FOUND = "found", _("Already posted")
        RETRYABLE = "retryable", _("Retryable error")
        UNKNOWN = "unknown", _("Outcome unknown (timeout)")
        PERMANENT = "permanent", _("Permanent error")

    delivery = models.ForeignKey(OutboundDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id}: {self.outcome}"
