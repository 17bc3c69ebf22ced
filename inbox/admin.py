"""Django admin: the operator's escape hatch beside the desk.

List pages join their foreign keys up front (``list_select_related``) and foreign-key widgets
search or take raw ids, so pages stay fast with 100k tickets. Machine-written records
(ticket events, dead letters, delivery attempts) are read-only here; source secrets are
write-only.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from inbox.models import (
    AgentProfile,
    BusinessCalendar,
    BusinessHours,
    CalendarHoliday,
    Contact,
    Customer,
    DeadLetter,
    DeliveryAttempt,
    Escalation,
    InternalTeam,
    Message,
    OutboundDelivery,
    Platform,
    Queue,
    ReplyTemplate,
    ReplyTemplateVariant,
    RoutingRule,
    SlaPolicy,
    Source,
    Tag,
    Ticket,
    TicketEvent,
)
from inbox.services.dead_letters import dead_letters_mark_resolved

PREVIEW_CHARS = 80
# Longer digit strings cannot be a primary key and would overflow SQLite's INTEGER.
_MAX_ID_DIGITS = 18


def _preview(text: str, chars: int = PREVIEW_CHARS) -> str:
    """One line of ``text`` with the full text on hover."""
    if not text:
        return ""
    return format_html('<span title="{}">{}</span>', text, Truncator(" ".join(text.split())).chars(chars))


def _pre(text: str) -> str:
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def _pretty_json(value: Any) -> str:
    return _pre(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


def _id_from_term(search_term: str) -> int | None:
    """``123`` or ``#123`` as an id, else None."""
    term = search_term.strip().removeprefix("#")
    if term.isascii() and term.isdigit() and len(term) <= _MAX_ID_DIGITS:
        return int(term)
    return None


class IdSearchMixin:
    """The search box also finds a row by id (``123`` or ``#123``), through the primary key index."""

    id_search_field = "pk"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        found_id = _id_from_term(search_term)
        if found_id is not None:
            results |= queryset.filter(**{self.id_search_field: found_id})
        return results, may_have_duplicates


class HandleSearchMixin:
    """``@handle`` in the search box finds the stored handle (stored without the ``@``)."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return super().get_search_results(request, queryset, search_term.strip().removeprefix("@"))


class PlatformFilter(admin.SimpleListFilter):
    """Platform choices from the enum: no SELECT DISTINCT over a large contacts table."""

    title = _("platform")
    parameter_name = "platform"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(Platform.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(platform=self.value())
        return queryset


# --- Sources ------------------------------------------------------------------


class WriteOnlyTextarea(forms.Textarea):
    """Never renders a value: neither stored secrets nor what was typed reach the page."""

    def format_value(self, value: Any) -> None:
        return None


class SourceAdminForm(forms.ModelForm):
    new_secrets = forms.JSONField(
        label=_("new secrets"),
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            'Write-only. A JSON object such as {"access_token": "..."}. If filled in, it replaces '
            "all stored secrets ({} removes them); leave empty to keep them. Stored secrets are "
            "never shown."
        ),
    )

    class Meta:
        model = Source
        # An allow-list, so a field added to Source later never exposes ``secrets`` by accident.
        fields = (
            "name",
            "platform",
            "enabled",
            "account_id",
            "default_queue",
            "poll_interval_seconds",
            "config",
            "needs_reauth",
        )

    def clean_new_secrets(self) -> dict[str, Any] | None:
        value = self.cleaned_data["new_secrets"]
        if value is not None and not isinstance(value, dict):
            raise ValidationError(_('Enter a JSON object, e.g. {"access_token": "..."}.'))
        return value


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    form = SourceAdminForm
    exclude = ("secrets",)
    list_display = (
        "name",
        "platform",
        "enabled",
        "last_success_at",
        "last_error_at",
        "consecutive_failures",
        "needs_reauth",
        "lag_seconds",
        "last_error_preview",
        "default_queue",
    )
    list_filter = ("platform", "enabled", "needs_reauth")
    list_select_related = ("default_queue",)
    search_fields = ("name", "account_id")
    autocomplete_fields = ("default_queue",)
    readonly_fields = (
        "stored_secret_names",
        "cursor_display",
        "next_poll_at",
        "last_polled_at",
        "last_success_at",
        "last_error_at",
        "last_error_details",
        "consecutive_failures",
        "lag_seconds",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "platform",
                    "enabled",
                    "account_id",
                    "default_queue",
                    "poll_interval_seconds",
                    "config",
                )
            },
        ),
        (_("Secrets"), {"fields": ("stored_secret_names", "new_secrets")}),
        (
            _("Health"),
            {
                "fields": (
                    "last_success_at",
                    "last_error_at",
                    "last_error_details",
                    "consecutive_failures",
                    "needs_reauth",
                    "lag_seconds",
                )
            },
        ),
        (_("Polling state"), {"fields": ("cursor_display", "next_poll_at", "last_polled_at")}),
        (_("Record"), {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description=_("last error"))
    def last_error_preview(self, obj: Source) -> str:
        return _preview(obj.last_error, 60)

    @admin.display(description=_("last error"))
    def last_error_details(self, obj: Source) -> str:
        return _pre(obj.last_error) if obj.last_error else ""

    @admin.display(description=_("cursor"))
    def cursor_display(self, obj: Source) -> str:
        return _pretty_json(obj.cursor) if obj.cursor is not None else ""

    @admin.display(description=_("stored secrets"))
    def stored_secret_names(self, obj: Source) -> str:
        # Names only, so an operator can tell what is configured; values never leave the database.
        names = sorted(obj.secrets) if isinstance(obj.secrets, dict) else []
        return ", ".join(names) if names else _("none")

    def save_model(self, request: HttpRequest, obj: Source, form: SourceAdminForm, change: bool) -> None:
        new_secrets = form.cleaned_data.get("new_secrets")
        if new_secrets is not None:
            obj.secrets = new_secrets
        super().save_model(request, obj, form, change)


# --- Contacts and customers -----------------------------------------------------


class ContactInline(admin.TabularInline):
    model = Contact
    fields = ("handle", "platform", "display_name", "followers_count", "verified", "last_seen_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(IdSearchMixin, admin.ModelAdmin):
    list_display = ("__str__", "display_name", "vip", "contact_count", "created_at")
    list_filter = ("vip",)
    search_fields = ("display_name", "contacts__handle")
    readonly_fields = ("created_at",)
    inlines = (ContactInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(contact_count=Count("contacts", distinct=True))

    @admin.display(description=_("contacts"), ordering="contact_count")
    def contact_count(self, obj: Customer) -> int:
        return obj.contact_count


@admin.register(Contact)
class ContactAdmin(HandleSearchMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "display_name",
        "platform",
        "followers_count",
        "verified",
        "language",
        "customer",
        "last_seen_at",
    )
    list_filter = (PlatformFilter, "verified")
    list_select_related = ("customer",)
    search_fields = ("handle", "display_name", "=external_id")
    autocomplete_fields = ("customer",)
    readonly_fields = ("first_seen_at",)


# --- Tickets and messages --------------------------------------------------------


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "ticket_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(ticket_count=Count("tickets", distinct=True))

    @admin.display(description=_("tickets"), ordering="ticket_count")
    def ticket_count(self, obj: Tag) -> int:
        return obj.ticket_count


def _author(message: Message) -> str:
    author = message.author_contact or message.author_user
    return str(author) if author is not None else ""


class TicketMessageInline(admin.TabularInline):
    model = Message
    fk_name = "ticket"
    fields = ("created_at", "direction", "author", "text_preview", "is_public", "delivery_state")
    readonly_fields = fields
    ordering = ("created_at", "id")
    extra = 0
    show_change_link = True
    verbose_name_plural = _("conversation")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("author_contact", "author_user")

    @admin.display(description=_("author"))
    def author(self, obj: Message) -> str:
        return _author(obj)

    @admin.display(description=_("text"))
    def text_preview(self, obj: Message) -> str:
        return _preview(obj.text, 140)

    def has_add_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
        return False


@admin.register(Ticket)
class TicketAdmin(IdSearchMixin, HandleSearchMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "subject_preview",
        "status",
        "priority",
        "queue",
        "assignee",
        "contact",
        "source",
        "language",
        "last_message_at",
    )
    list_display_links = ("__str__", "subject_preview")
    list_filter = ("status", "priority", "queue", "source", "is_private")
    list_select_related = ("queue", "assignee", "contact", "source")
    search_fields = ("subject", "contact__handle")
    autocomplete_fields = ("queue", "assignee", "source", "tags")
    raw_id_fields = ("customer", "contact", "previous_ticket")
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False
    inlines = (TicketMessageInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "status",
                    "priority",
                    "queue",
                    "assignee",
                    "tags",
                    "subject",
                    "language",
                    "sentiment",
                    "is_private",
                )
            },
        ),
        (_("Customer"), {"fields": ("source", "customer", "contact", "previous_ticket")}),
        (
            _("Clock"),
            {
                "fields": (
                    "opened_at",
                    "last_message_at",
                    "last_customer_message_at",
                    "first_response_at",
                    "solved_at",
                    "reopened_count",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    @admin.display(description=_("preview"), ordering="subject")
    def subject_preview(self, obj: Ticket) -> str:
        return _preview(obj.subject, 60)


@admin.register(Message)
class MessageAdmin(IdSearchMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "created_at",
        "direction",
        "source",
        "ticket",
        "author",
        "text_preview",
        "is_public",
        "delivery_state",
    )
    list_filter = ("direction", "delivery_state", "is_public", "source")
    list_select_related = ("source", "ticket", "author_contact", "author_user")
    search_fields = ("text", "external_id")
    autocomplete_fields = ("source",)
    raw_id_fields = ("ticket", "in_reply_to", "author_contact", "author_user")
    exclude = ("raw",)
    readonly_fields = ("raw_payload", "received_at")
    show_full_result_count = False

    @admin.display(description=_("author"))
    def author(self, obj: Message) -> str:
        return _author(obj)

    @admin.display(description=_("text"))
    def text_preview(self, obj: Message) -> str:
        return _preview(obj.text)

    @admin.display(description=_("raw payload"))
    def raw_payload(self, obj: Message) -> str:
        return _pretty_json(obj.raw)


# --- Audit log and dead letters ----------------------------------------------------


@admin.register(TicketEvent)
class TicketEventAdmin(IdSearchMixin, admin.ModelAdmin):
    """Append-only: viewable, never added, changed or deleted from the admin."""

    # The search box takes a ticket number: that is what an operator has in hand.
    id_search_field = "ticket_id"
    list_display = ("id", "created_at", "type", "ticket", "queue", "actor")
    list_filter = ("queue",)
    list_select_related = ("ticket", "queue", "actor")
    search_fields = ("^type",)
    fields = ("id", "created_at", "type", "ticket", "queue", "actor", "payload_display")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description=_("payload"))
    def payload_display(self, obj: TicketEvent) -> str:
        return _pretty_json(obj.payload)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TicketEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TicketEvent | None = None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(IdSearchMixin, admin.ModelAdmin):
    """Written by ingest only; an operator reads the reason and marks the item resolved."""

    list_display = ("id", "received_at", "origin", "source", "external_id", "reason_preview", "resolved")
    list_filter = ("origin", "source", "resolved")
    list_select_related = ("source",)
    search_fields = ("reason", "external_id")
    fields = (
        "source",
        "origin",
        "external_id",
        "received_at",
        "reason_details",
        "payload_display",
        "resolved",
    )
    readonly_fields = ("source", "origin", "external_id", "received_at", "reason_details", "payload_display")
    actions = ("mark_resolved",)

    @admin.display(description=_("reason"))
    def reason_preview(self, obj: DeadLetter) -> str:
        return _preview(obj.reason)

    @admin.display(description=_("reason"))
    def reason_details(self, obj: DeadLetter) -> str:
        return _pre(obj.reason)

    @admin.display(description=_("payload"))
    def payload_display(self, obj: DeadLetter) -> str:
        try:
            return _pretty_json(json.loads(obj.payload))
        except ValueError:
            return _pre(obj.payload)

    @admin.action(description=_("Mark resolved"), permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = dead_letters_mark_resolved(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request,
            ngettext(
                "%(count)d dead letter marked resolved.", "%(count)d dead letters marked resolved.", count
            )
            % {"count": count},
            messages.SUCCESS,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# --- Outbound ------------------------------------------------------------------------


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ("started_at", "finished_at", "outcome", "error_details")
    readonly_fields = fields
    extra = 0

    @admin.display(description=_("error"))
    def error_details(self, obj: DeliveryAttempt) -> str:
        return _pre(obj.error) if obj.error else ""

    def has_add_permission(self, request: HttpRequest, obj: OutboundDelivery | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboundDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: OutboundDelivery | None = None) -> bool:
        return False


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(IdSearchMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "message",
        "source",
        "state",
        "attempts",
        "outcome_unknown",
        "created_at",
        "sent_at",
        "failed_at",
        "last_error_preview",
    )
    list_filter = ("state", "outcome_unknown", "source")
    list_select_related = ("message", "source")
    search_fields = ("platform_id", "last_error")
    raw_id_fields = ("message",)
    autocomplete_fields = ("source",)
    readonly_fields = ("idempotency_key", "created_at")
    show_full_result_count = False
    inlines = (DeliveryAttemptInline,)

    @admin.display(description=_("last error"))
    def last_error_preview(self, obj: OutboundDelivery) -> str:
        return _preview(obj.last_error, 60)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            key = uuid.UUID(search_term.strip())
        except ValueError:
            return results, may_have_duplicates
        return results | queryset.filter(idempotency_key=key), may_have_duplicates


# --- Queues, agents, templates ---------------------------------------------------------


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_default", "member_count", "created_at")
    list_filter = ("is_default",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("members",)
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(member_count=Count("members", distinct=True))

    @admin.display(description=_("members"), ordering="member_count")
    def member_count(self, obj: Queue) -> int:
        return obj.member_count


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "full_name", "role", "languages", "capacity", "presence", "ui_language")
    list_filter = ("role", "presence")
    list_select_related = ("user",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
    autocomplete_fields = ("user",)

    @admin.display(description=_("name"), ordering="user__first_name")
    def full_name(self, obj: AgentProfile) -> str:
        return obj.user.get_full_name()


class AgentProfileInline(admin.StackedInline):
    model = AgentProfile
    can_delete = False
    fields = ("role", "languages", "capacity", "presence", "ui_language")
    verbose_name_plural = _("desk profile")


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = (AgentProfileInline,)
    list_display = ("username", "first_name", "last_name", "email", "desk_role", "is_staff", "is_active")
    list_select_related = ("agent_profile",)

    @admin.display(description=_("desk role"))
    def desk_role(self, obj: Any) -> str | None:
        try:
            return obj.agent_profile.get_role_display()
        except AgentProfile.DoesNotExist:
            return None


class ReplyTemplateVariantInline(admin.TabularInline):
    model = ReplyTemplateVariant
    fields = ("language", "body")
    extra = 1


@admin.register(ReplyTemplate)
class ReplyTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "shortcut", "queue", "active", "usage_count", "variant_languages")
    list_filter = ("active", "queue")
    list_select_related = ("queue",)
    search_fields = ("name", "shortcut", "variants__body")
    autocomplete_fields = ("queue",)
    readonly_fields = ("usage_count", "created_by", "created_at", "updated_at")
    inlines = (ReplyTemplateVariantInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        languages = ReplyTemplateVariant.objects.only("template_id", "language").order_by("language")
        return super().get_queryset(request).prefetch_related(Prefetch("variants", queryset=languages))

    @admin.display(description=_("languages"))
    def variant_languages(self, obj: ReplyTemplate) -> str:
        return ", ".join(variant.language for variant in obj.variants.all())

    def save_model(
        self, request: HttpRequest, obj: ReplyTemplate, form: forms.ModelForm, change: bool
    ) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


# --- Routing, SLA, escalation ----------------------------------------------------------------


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    list_display = ("position", "name", "enabled", "queue", "set_priority", "mark_noise", "continue_matching")
    list_display_links = ("name",)
    list_editable = ("position", "enabled")
    list_filter = ("enabled", "queue", "mark_noise", "requires_approval")
    list_select_related = ("queue",)
    search_fields = ("name", "keywords", "text_regex")
    filter_horizontal = ("sources",)
    fieldsets = (
        (None, {"fields": ("name", "position", "enabled", "continue_matching")}),
        (
            _("Conditions"),
            {
                "fields": (
                    "sources", "platforms", "visibility", "languages", "keywords", "text_regex",
                    "min_followers", "verified", "vip", "sentiment_below", "sentiment_above",
                    "active_from", "active_until", "active_weekdays", "has_open_ticket",
                )
            },
        ),
        (
            _("Actions"),
            {"fields": ("queue", "set_priority", "add_tags", "sla_policy", "mark_noise", "requires_approval")},
        ),
    )


class BusinessHoursInline(admin.TabularInline):
    model = BusinessHours
    extra = 0


class CalendarHolidayInline(admin.TabularInline):
    model = CalendarHoliday
    extra = 0


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    list_display = ("name", "time_zone", "always_open", "holiday_country", "holiday_subdivision")
    search_fields = ("name",)
    inlines = [BusinessHoursInline, CalendarHolidayInline]


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "name", "queue", "priority", "calendar", "first_response_minutes", "next_response_minutes",
        "resolution_minutes",
    )
    list_filter = ("queue", "priority", "calendar")
    list_select_related = ("queue", "calendar")
    search_fields = ("name",)


@admin.register(InternalTeam)
class InternalTeamAdmin(admin.ModelAdmin):
    list_display = ("name", "queue", "email", "target_minutes", "active")
    list_filter = ("active",)
    list_select_related = ("queue",)
    search_fields = ("name", "email")


@admin.register(Escalation)
class EscalationAdmin(IdSearchMixin, admin.ModelAdmin):
    list_display = ("id", "ticket", "team", "status", "created_by", "created_at", "due_at", "answered_at")
    list_filter = ("status", "team")
    list_select_related = ("ticket", "team", "created_by")
    search_fields = ("note", "answer", "answered_by")
    raw_id_fields = ("ticket",)
    readonly_fields = ("reply_token", "created_at", "answered_at")
