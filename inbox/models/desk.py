from django.conf import settings
from django.db import models


class TicketSeen(models.Model):
    """How far an agent has read a ticket: drives the unread marker in the lists."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    ticket = models.ForeignKey("inbox.Ticket", on_delete=models.CASCADE, related_name="seen_by")
    # The newest message of the ticket when the agent last had it open.
    last_message_id = models.BigIntegerField(default=0)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "ticket"], name="ticket_seen_once")]

    def __str__(self) -> str:
        return f"{self.user_id} saw #{self.ticket_id} up to message {self.last_message_id}"
