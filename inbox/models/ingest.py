from django.db import models
from django.utils.translation import gettext_lazy as _


class DeadLetter(models.Model):
    """An inbound item that could not be ingested, kept with the reason for an operator."""

    class Origin(models.TextChoices):
        POLL = "poll", _("Poll")
        WEBHOOK = "webhook", _("Webhook")
        IMPORT = "import", _("Import")
        API = "api", _("API")

    source = models.ForeignKey(
        "inbox.Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="dead_letters"
    )
    origin = models.CharField(max_length=10, choices=Origin.choices)
    external_id = models.CharField(max_length=200, blank=True)
    reason = models.TextField()
    # The item as received, JSON-encoded text (escapes NUL and other bytes a JSON column refuses).
    payload = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    resolved = models.BooleanField(_("resolved"), default=False)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason[:60]}"
