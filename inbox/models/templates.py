from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ReplyTemplate(models.Model):
    """A canned answer with per-language variants and {variables}."""

    name = models.CharField(_("name"), max_length=120)
    shortcut = models.SlugField(_("shortcut"), max_length=40, unique=True)
    queue = models.ForeignKey(
        "inbox.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="templates",
        help_text=_("Empty: available in every queue."),
    )
    active = models.BooleanField(_("active"), default=True)
    usage_count = models.PositiveIntegerField(_("times used"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("reply template")
        verbose_name_plural = _("reply templates")

    def __str__(self) -> str:
        return f"/{self.shortcut} {self.name}"


class ReplyTemplateVariant(models.Model):
    template = models.ForeignKey(ReplyTemplate, on_delete=models.CASCADE, related_name="variants")
    language = models.CharField(_("language"), max_length=10)
    body = models.TextField(_("text"))

    class Meta:
        verbose_name = _("template variant")
        verbose_name_plural = _("template variants")
        constraints = [
            models.UniqueConstraint(fields=["template", "language"], name="one_variant_per_language")
        ]

    def __str__(self) -> str:
        return f"{self.template.shortcut} [{self.language}]"
