from django.db import models
from django.utils.translation import gettext_lazy as _


class Platform(models.TextChoices):
    SIMULATED = "simulated", _("Simulated (demo)")
    MASTODON = "mastodon", _("Mastodon")
    BLUESKY = "bluesky", _("Bluesky")
    X = "x", _("X")
    FACEBOOK = "facebook", _("Facebook")
    INSTAGRAM = "instagram", _("Instagram")
    MESSENGER = "messenger", _("Messenger")
    GENERIC = "generic", _("Generic webhook")
    IMPORT = "import", _("Imported history")


class Source(models.Model):
    """One connected account or feed on a platform."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    platform = models.CharField(_("platform"), max_length=20, choices=Platform.choices)
    enabled = models.BooleanField(_("enabled"), default=True)
    # Non-secret connector settings (instance URL, tracked hashtags, demo rate ...).
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    # Tokens and app secrets. Never returned by the API and never logged.
    secrets = models.JSONField(_("secrets"), default=dict, blank=True)
    # The brand's own account id on the platform: messages it authored are ours.
    account_id = models.CharField(_("brand account id"), max_length=200, blank=True)
    default_queue = models.ForeignKey(
        "inbox.Queue", verbose_name=_("default queue"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="+",
    )
    poll_interval_seconds = models.PositiveIntegerField(_("poll interval (s)"), default=60)

    # Polling state.
    cursor = models.JSONField(_("cursor"), null=True, blank=True)
    next_poll_at = models.DateTimeField(_("next poll at"), null=True, blank=True)
    last_polled_at = models.DateTimeField(_("last polled at"), null=True, blank=True)

    # Health.
    last_success_at = models.DateTimeField(_("last success at"), null=True, blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    consecutive_failures = models.PositiveIntegerField(_("consecutive failures"), default=0)
    needs_reauth = models.BooleanField(_("needs re-authorization"), default=False)
    lag_seconds = models.FloatField(
        _("lag (s)"), null=True, blank=True,
        help_text=_("Age of the newest message when it was ingested by the last poll."),
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("source")
        verbose_name_plural = _("sources")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_platform_display()})"
