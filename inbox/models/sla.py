from django.db import models
from django.utils.translation import gettext_lazy as _


class BusinessCalendar(models.Model):
    """When a team works: weekly hours (split and overnight shifts), holidays, time zone."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    time_zone = models.CharField(_("time zone"), max_length=64, default="Europe/Amsterdam")
    always_open = models.BooleanField(_("24/7"), default=False)
    # Public holidays from the `holidays` library, e.g. country "NL", subdivision "".
    holiday_country = models.CharField(_("holiday country"), max_length=8, blank=True)
    holiday_subdivision = models.CharField(_("holiday subdivision"), max_length=16, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("business calendar")
        verbose_name_plural = _("business calendars")

    def __str__(self) -> str:
        return self.name


class BusinessHours(models.Model):
    """One shift on one weekday. ``end <= start`` means the shift runs past midnight."""

    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="hours")
    weekday = models.PositiveSmallIntegerField(_("weekday (0 = Monday)"))
    start = models.TimeField(_("start"))
    end = models.TimeField(_("end"))

    class Meta:
        ordering = ["calendar", "weekday", "start"]
        verbose_name = _("business hours")
        verbose_name_plural = _("business hours")

    def __str__(self) -> str:
        return f"{self.weekday} {self.start:%H:%M}-{self.end:%H:%M}"


class CalendarHoliday(models.Model):
    """A custom closed day on top of (or instead of) the public holidays."""

    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="custom_holidays")
    date = models.DateField(_("date"))
    name = models.CharField(_("name"), max_length=100, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["calendar", "date"], name="one_holiday_per_date")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


class SlaPolicy(models.Model):
    """Response and resolution targets, in business minutes of the calendar."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    queue = models.ForeignKey(
        "inbox.Queue", verbose_name=_("queue"), null=True, blank=True, on_delete=models.CASCADE,
        related_name="sla_policies", help_text=_("Empty: any queue."),
    )
    priority = models.PositiveSmallIntegerField(_("priority"), null=True, blank=True, help_text=_("Empty: any priority."))
    calendar = models.ForeignKey(
        BusinessCalendar, verbose_name=_("calendar"), null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text=_("Empty: around the clock."),
    )
    first_response_minutes = models.PositiveIntegerField(_("first response (min)"), null=True, blank=True)
    next_response_minutes = models.PositiveIntegerField(_("next response (min)"), null=True, blank=True)
    resolution_minutes = models.PositiveIntegerField(_("resolution (min)"), null=True, blank=True)
    at_risk_ratio = models.FloatField(_("at risk at"), default=0.8)
    notify_leads = models.BooleanField(_("notify leads on breach"), default=True)
    raise_priority = models.BooleanField(_("raise priority on breach"), default=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("SLA policy")
        verbose_name_plural = _("SLA policies")

    def __str__(self) -> str:
        return self.name
