import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


def _reply_token() -> str:
    return secrets.token_urlsafe(18)


class InternalTeam(models.Model):
    """A back-office team tickets can be escalated to: a queue in the desk, or an e-mail address."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    queue = models.ForeignKey(
        "inbox.Queue", verbose_name=_("queue in the desk"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="+",
    )
    email = models.EmailField(_("e-mail address"), blank=True)
    target_minutes = models.PositiveIntegerField(_("answer expected within (min)"), null=True, blank=True)
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("internal team")
        verbose_name_plural = _("internal teams")

    def __str__(self) -> str:
        return self.name


class Escalation(models.Model):
    class Status(models.TextChoices):
        WAITING = "waiting", _("Waiting on internal")
        ANSWERED = "answered", _("Answered")
        CANCELLED = "cancelled", _("Cancelled")

    ticket = models.ForeignKey("inbox.Ticket", on_delete=models.CASCADE, related_name="escalations")
    team = models.ForeignKey(InternalTeam, on_delete=models.PROTECT, related_name="escalations")
    note = models.TextField(_("note"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    # Secret in the reply address/subject of the e-mail, to match the answer to the escalation.
    reply_token = models.CharField(max_length=40, unique=True, default=_reply_token, editable=False)
    due_at = models.DateTimeField(null=True, blank=True)
    answer = models.TextField(_("answer"), blank=True)
    answered_by = models.CharField(_("answered by"), max_length=300, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("escalation")
        verbose_name_plural = _("escalations")

    def __str__(self) -> str:
        return f"#{self.ticket_id} → {self.team}"
