from django.db import models
from django.utils.translation import gettext_lazy as _


class Customer(models.Model):
    """A person across platforms. Contacts (platform identities) link to one customer."""

    display_name = models.CharField(_("name"), max_length=300, blank=True)
    vip = models.BooleanField(_("VIP"), default=False)
    notes = models.TextField(_("notes"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")

    def __str__(self) -> str:
        return self.display_name or f"#{self.pk}"


class Contact(models.Model):
    """One identity on one platform (a handle), upserted by ingest."""

    platform = models.CharField(_("platform"), max_length=20)
    external_id = models.CharField(_("platform user id"), max_length=200)
    handle = models.CharField(_("handle"), max_length=300, blank=True)
    display_name = models.CharField(_("display name"), max_length=300, blank=True)
    followers_count = models.PositiveBigIntegerField(_("followers"), null=True, blank=True)
    verified = models.BooleanField(_("verified"), default=False)
    language = models.CharField(_("language"), max_length=10, blank=True)
    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.PROTECT, related_name="contacts"
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        constraints = [
            models.UniqueConstraint(fields=["platform", "external_id"], name="contact_identity")
        ]
        indexes = [models.Index(fields=["handle"])]

    def __str__(self) -> str:
        return f"@{self.handle}" if self.handle else self.external_id
