from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Tag(models.Model):
    name = models.CharField(_("name"), max_length=60, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Ticket(models.Model):
    """The case: one customer conversation that needs an answer."""

    class Status(models.TextChoices):
        NEW = "new", _("New")
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        SOLVED = "solved", _("Solved")
        CLOSED = "closed", _("Closed")

    class Priority(models.IntegerChoices):
        LOW = 0, _("Low")
        NORMAL = 1, _("Normal")
        HIGH = 2, _("High")
        URGENT = 3, _("Urgent")

    ACTIVE_STATUSES = (Status.NEW, Status.OPEN, Status.PENDING)

    source = models.ForeignKey("inbox.Source", on_delete=models.PROTECT, related_name="tickets")
    queue = models.ForeignKey(
        "inbox.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_tickets",
    )
    customer = models.ForeignKey(
        "inbox.Customer", on_delete=models.PROTECT, related_name="tickets"
    )
    contact = models.ForeignKey("inbox.Contact", on_delete=models.PROTECT, related_name="tickets")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    is_private = models.BooleanField(_("private conversation"), default=False)
    language = models.CharField(max_length=10, blank=True)
    sentiment = models.FloatField(null=True, blank=True)
    subject = models.CharField(_("preview"), max_length=200, blank=True)
    # Routing outcome.
    routing_rule = models.ForeignKey(
        "inbox.RoutingRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_noise = models.BooleanField(_("noise or spam"), default=False)
    reply_approval_required = models.BooleanField(_("replies need approval"), default=False)
    assigned_at = models.DateTimeField(null=True, blank=True)

    # SLA: due times are absolute instants computed with the policy's business calendar.
    class SlaState(models.TextChoices):
        NONE = "", _("No SLA")
        OK = "ok", _("On track")
        AT_RISK = "at_risk", _("At risk")
        BREACHED = "breached", _("Breached")

    sla_policy = models.ForeignKey(
        "inbox.SlaPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets"
    )
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    next_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    sla_state = models.CharField(max_length=10, choices=SlaState.choices, default=SlaState.NONE, blank=True)
    sla_state_changed_at = models.DateTimeField(null=True, blank=True)
    # While pending (waiting on the customer) the SLA clocks stop.
    pending_since = models.DateTimeField(null=True, blank=True)
    last_agent_reply_at = models.DateTimeField(null=True, blank=True)

    # Set when a conversation started after the reopen window of a solved ticket.
    previous_ticket = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="follow_up_tickets"
    )

    # Platform time of the first customer message.
    opened_at = models.DateTimeField()
    last_message_at = models.DateTimeField()
    last_customer_message_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    solved_at = models.DateTimeField(null=True, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("ticket")
        verbose_name_plural = _("tickets")
        indexes = [
            models.Index(fields=["status", "queue"]),
            models.Index(fields=["assignee", "status"]),
            models.Index(fields=["-last_message_at"]),
            models.Index(fields=["sla_state", "status"]),
            # The backlog sweep: waiting tickets of a queue, highest priority and oldest first.
            models.Index(fields=["queue", "assignee", "status", "-priority", "opened_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES
