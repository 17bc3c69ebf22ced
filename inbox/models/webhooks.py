from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class WebhookDelivery(models.Model):
    """One webhook request as received, kept before it is parsed (store first, ingest later).

    The body is kept as the exact bytes that were signed (``BinaryField``): PostgreSQL text
    refuses NUL, and decoding would lose invalid UTF-8 that an operator may need to see to
    tell the sender what is wrong. The admin shows it decoded with errors replaced.
    """

    class State(models.TextChoices):
        RECEIVED = "received", _("Received")
        PROCESSED = "processed", _("Processed")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Failed")

    # Null for platforms whose one endpoint serves many sources until the body is read (Meta).
    source = models.ForeignKey(
        "inbox.Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="webhook_deliveries"
    )
    platform = models.CharField(_("platform"), max_length=20)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)
    body = models.BinaryField(_("body"))
    # Content type, user agent, delivery id, timestamp, names of the signature headers present.
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    # The sender's own id of this delivery (X-Webcare-Delivery), when it gives one: replays of it
    # are refused at the door.
    delivery_id = models.CharField(_("delivery id"), max_length=200, blank=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices, default=State.RECEIVED)
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "delivery_id"],
                condition=~Q(delivery_id=""),
                name="webhook_delivery_unique_per_source",
            )
        ]
        indexes = [models.Index(fields=["state", "received_at"])]

    def __str__(self) -> str:
        return f"webhook {self.pk} ({self.platform}, {self.state})"
