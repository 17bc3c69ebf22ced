from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Queue(models.Model):
    """A team inbox. Tickets are routed to a queue, then assigned to its members."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)
    description = models.TextField(_("description"), blank=True)
    is_default = models.BooleanField(
        _("default queue"), default=False,
        help_text=_("Receives tickets no routing rule and no source sends elsewhere."),
    )
    class AssignmentMode(models.TextChoices):
        PUSH = "push", _("Push: auto-assign to the best agent")
        PULL = "pull", _("Pull: agents take the next ticket")

    assignment_mode = models.CharField(
        _("assignment"), max_length=10, choices=AssignmentMode.choices, default=AssignmentMode.PUSH
    )
    auto_assign_paused = models.BooleanField(_("auto-assignment paused"), default=False)
    sticky_follow_ups = models.BooleanField(
        _("follow-ups go to the customer's last agent"), default=True,
        help_text=_("When that agent is online and has room."),
    )
    calendar = models.ForeignKey(
        "inbox.BusinessCalendar", verbose_name=_("business calendar"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="queues",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, verbose_name=_("members"), blank=True, related_name="desk_queues"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_queue"
            )
        ]

    def __str__(self) -> str:
        return self.name


class AgentProfile(models.Model):
    class Role(models.TextChoices):
        AGENT = "agent", _("Agent")
        LEAD = "lead", _("Team lead")

    class Presence(models.TextChoices):
        ONLINE = "online", _("Online")
        AWAY = "away", _("Away")
        OFFLINE = "offline", _("Offline")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile"
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices, default=Role.AGENT)
    # ISO 639-1 codes the agent answers in.
    languages = models.JSONField(_("languages"), default=list, blank=True)
    capacity = models.PositiveIntegerField(_("capacity"), default=8)
    presence = models.CharField(
        _("presence"), max_length=10, choices=Presence.choices, default=Presence.OFFLINE
    )
    presence_changed_at = models.DateTimeField(_("presence changed at"), null=True, blank=True)
    # Longest idle first: when this agent last got a ticket.
    last_assigned_at = models.DateTimeField(_("last assigned at"), null=True, blank=True)
    ui_language = models.CharField(
        _("interface language"), max_length=10, choices=settings.LANGUAGES, default="en"
    )

    class Meta:
        verbose_name = _("agent profile")
        verbose_name_plural = _("agent profiles")

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.get_role_display()})"

    @property
    def is_lead(self) -> bool:
        return self.role == self.Role.LEAD
