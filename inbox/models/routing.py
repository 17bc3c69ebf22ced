from django.db import models
from django.utils.translation import gettext_lazy as _


class RoutingRule(models.Model):
    """An ordered rule: when every set condition holds, its actions apply.

    Conditions left empty do not constrain. Rules are evaluated by position; a
    matching rule stops evaluation unless ``continue_matching`` is set, in which
    case later matches accumulate (tags add up; later queue/priority/SLA win).
    """

    class Visibility(models.TextChoices):
        ANY = "", _("Public or private")
        PUBLIC = "public", _("Public only")
        PRIVATE = "private", _("Private only")

    name = models.CharField(_("name"), max_length=120)
    position = models.PositiveIntegerField(_("position"), default=100, db_index=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    # --- Conditions ---------------------------------------------------------
    sources = models.ManyToManyField("inbox.Source", verbose_name=_("sources"), blank=True, related_name="+")
    platforms = models.JSONField(_("platforms"), default=list, blank=True)
    visibility = models.CharField(_("visibility"), max_length=10, choices=Visibility.choices, blank=True)
    languages = models.JSONField(_("languages"), default=list, blank=True)
    # One word or phrase per line; matches when any occurs (case-insensitive, whole words).
    keywords = models.TextField(_("words or phrases"), blank=True)
    text_regex = models.CharField(_("regular expression"), max_length=500, blank=True)
    min_followers = models.PositiveBigIntegerField(_("at least this many followers"), null=True, blank=True)
    verified = models.BooleanField(_("verified account"), null=True, blank=True)
    vip = models.BooleanField(_("VIP customer"), null=True, blank=True)
    sentiment_below = models.FloatField(_("sentiment below"), null=True, blank=True)
    sentiment_above = models.FloatField(_("sentiment above"), null=True, blank=True)
    # Time of day in the desk's time zone; from > until means across midnight.
    active_from = models.TimeField(_("from"), null=True, blank=True)
    active_until = models.TimeField(_("until"), null=True, blank=True)
    active_weekdays = models.JSONField(_("weekdays (0 = Monday)"), default=list, blank=True)
    has_open_ticket = models.BooleanField(_("customer already has an open ticket"), null=True, blank=True)

    # --- Actions ------------------------------------------------------------
    queue = models.ForeignKey(
        "inbox.Queue", verbose_name=_("route to queue"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="+",
    )
    set_priority = models.PositiveSmallIntegerField(_("set priority"), null=True, blank=True)
    add_tags = models.JSONField(_("add tags"), default=list, blank=True)
    sla_policy = models.ForeignKey(
        "inbox.SlaPolicy", verbose_name=_("SLA policy"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="+",
    )
    mark_noise = models.BooleanField(_("noise or spam (kept, not routed)"), default=False)
    requires_approval = models.BooleanField(_("replies need a lead's approval"), default=False)
    continue_matching = models.BooleanField(_("continue with later rules"), default=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")

    def __str__(self) -> str:
        return self.name
