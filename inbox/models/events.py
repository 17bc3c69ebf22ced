from django.conf import settings
from django.db import models


class TicketEvent(models.Model):
    """Append-only audit log. The id is monotonic: clients resume after their last id."""

    ticket = models.ForeignKey(
        "inbox.Ticket", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    # Queue the ticket was in when the event happened, for scoping pushes and catch-up.
    queue = models.ForeignKey(
        "inbox.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    type = models.CharField(max_length=40)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["ticket", "id"])]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"
