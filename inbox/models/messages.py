from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Message(models.Model):
    """One post, comment or private message, inbound (customer) or outbound (brand)."""

    class Direction(models.TextChoices):
        INBOUND = "in", _("Inbound")
        OUTBOUND = "out", _("Outbound")
        # Internal note: seen by the team only, never sent to a platform.
        NOTE = "note", _("Internal note")

    class Delivery(models.TextChoices):
        NONE = "", _("Not applicable")
        AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    source = models.ForeignKey("inbox.Source", on_delete=models.PROTECT, related_name="messages")
    # Null only for brand posts that answer nothing (a broadcast seen by a poll).
    ticket = models.ForeignKey(
        "inbox.Ticket", null=True, blank=True, on_delete=models.CASCADE, related_name="messages"
    )
    direction = models.CharField(max_length=4, choices=Direction.choices)
    is_public = models.BooleanField(default=True)
    # Platform id; empty (NULL) for an outbound reply until the platform accepted it.
    external_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 - NULLs stay out of the unique constraint
    in_reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    in_reply_to_external_id = models.CharField(max_length=200, blank=True)
    conversation_id = models.CharField(max_length=200, blank=True)
    author_contact = models.ForeignKey(
        "inbox.Contact", null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    author_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="sent_messages",
    )
    text = models.TextField(blank=True)
    language = models.CharField(max_length=10, blank=True)
    sentiment = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(help_text=_("Time on the platform."))
    received_at = models.DateTimeField(auto_now_add=True)
    raw = models.JSONField(default=dict, blank=True)
    # The reply template an agent started this reply from (ranks template suggestions).
    reply_template = models.ForeignKey(
        "inbox.ReplyTemplate", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    delivery_state = models.CharField(
        max_length=20, choices=Delivery.choices, default=Delivery.NONE, blank=True
    )

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="message_platform_id")
        ]
        indexes = [
            models.Index(fields=["ticket", "created_at"]),
            models.Index(fields=["source", "in_reply_to_external_id"]),
            models.Index(fields=["source", "conversation_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.external_id or self.pk}"
