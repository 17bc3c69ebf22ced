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
    TicketSeen,
    WebhookDelivery,
)
from inbox.services.dead_letters import dead_letters_mark_resolved
from inbox.services.sources import SourceError, source_poll_now
from inbox.services.webhooks import webhook_deliveries_reprocess

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
    actions = ("poll_now",)
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

    @admin.action(description=_("Poll the selected sources now"))
    def poll_now(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        for source in queryset:
            try:
                source_poll_now(source=source, actor=request.user)
            except SourceError as exc:
                self.message_user(request, f"{source.name}: {exc}", messages.WARNING)
            else:
                self.message_user(request, _("%(name)s: poll queued.") % {"name": source.name}, messages.SUCCESS)

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


class TicketSeenInline(admin.TabularInline):
    """Who has read the ticket how far (the desk's unread marker); written by the desk only."""

    model = TicketSeen
    fields = ("user", "last_message_id", "seen_at")
    readonly_fields = fields
    extra = 0
    verbose_name_plural = _("read by")

    def has_add_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Ticket | None = None) -> bool:
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
    inlines = (TicketMessageInline, TicketSeenInline)
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
    """Ordered routing rules, saved through ``inbox.services.routing_rules`` (checked, audited,
    and picked up by every process). "Try it" routes a sample message and shows which rule
    matches and why the others did not."""

    class Form(forms.ModelForm):
        platforms = forms.MultipleChoiceField(
            label=_("platforms"),
            choices=Platform.choices,
            required=False,
            widget=forms.CheckboxSelectMultiple,
        )
        languages = forms.MultipleChoiceField(
            label=_("languages"), required=False, widget=forms.CheckboxSelectMultiple
        )
        active_weekdays = forms.TypedMultipleChoiceField(
            label=_("weekdays"),
            coerce=int,
            required=False,
            widget=forms.CheckboxSelectMultiple,
            help_text=_("In the desk time zone. For a window across midnight, the day it starts."),
        )
        add_tags = forms.CharField(
            label=_("add tags"), required=False, help_text=_("Tag names, separated by commas.")
        )
        set_priority = forms.TypedChoiceField(
            label=_("set priority"),
            choices=[("", "---------"), *Ticket.Priority.choices],
            coerce=int,
            empty_value=None,
            required=False,
        )

        class Meta:
            model = RoutingRule
            fields = (
                "name",
                "position",
                "enabled",
                "continue_matching",
                "sources",
                "platforms",
                "visibility",
                "languages",
                "keywords",
                "text_regex",
                "min_followers",
                "verified",
                "vip",
                "sentiment_below",
                "sentiment_above",
                "active_from",
                "active_until",
                "active_weekdays",
                "has_open_ticket",
                "queue",
                "set_priority",
                "add_tags",
                "sla_policy",
                "mark_noise",
                "requires_approval",
            )
            help_texts = {
                "keywords": _(
                    "One word or phrase per line; matches when any occurs (whole words, any case)."
                ),
                "text_regex": _("Searched in the message text, ignoring case."),
                "active_until": _("Before the start time: the window runs across midnight."),
            }

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from django.utils.dates import WEEKDAYS

            from inbox.routing.language import desk_languages

            super().__init__(*args, **kwargs)
            self.fields["languages"].choices = [(code, code) for code in desk_languages()]
            self.fields["active_weekdays"].choices = list(WEEKDAYS.items())
            if self.instance.pk is not None:
                self.initial["add_tags"] = ", ".join(self.instance.add_tags or [])

        def clean_add_tags(self) -> list[str]:
            return list(
                dict.fromkeys(t.strip() for t in self.cleaned_data["add_tags"].split(",") if t.strip())
            )

        def clean(self) -> dict[str, Any]:
            from inbox.routing.engine import rule_errors
            from inbox.routing.language import desk_languages

            data = super().clean()
            errors = rule_errors(
                {name: value for name, value in data.items() if name in self.Meta.fields},
                languages=desk_languages(),
                platforms=[value for value, _label in Platform.choices],
            )
            for name, messages_ in errors.items():
                for message in messages_:
                    self.add_error(name if name in self.fields else None, message)
            return data

    class TryForm(forms.Form):
        text = forms.CharField(label=_("message text"), widget=forms.Textarea(attrs={"rows": 4}), strip=False)
        source = forms.ModelChoiceField(
            label=_("source"), queryset=Source.objects.order_by("name"), required=False
        )
        platform = forms.ChoiceField(
            label=_("platform"), choices=[("", _("the source's platform")), *Platform.choices], required=False
        )
        is_public = forms.BooleanField(label=_("public"), required=False, initial=True)
        followers_count = forms.IntegerField(label=_("followers"), min_value=0, required=False)
        verified = forms.BooleanField(label=_("verified account"), required=False)
        vip = forms.BooleanField(label=_("VIP customer"), required=False)
        has_open_ticket = forms.BooleanField(label=_("customer already has an open ticket"), required=False)
        language = forms.ChoiceField(label=_("language"), required=False)
        created_at = forms.DateTimeField(
            label=_("written at"),
            required=False,
            help_text=_("Desk time zone; empty: now."),
            widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        )

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from inbox.routing.language import desk_languages

            super().__init__(*args, **kwargs)
            self.fields["language"].choices = [
                ("", _("detect from the text")),
                *((c, c) for c in desk_languages()),
            ]

    change_list_template = "admin/inbox/routingrule/change_list.html"
    form = Form
    list_display = ("position", "name", "enabled", "queue", "set_priority", "mark_noise", "continue_matching")
    list_display_links = ("name",)
    list_editable = ("position", "enabled")
    list_filter = ("enabled", "queue", "mark_noise", "requires_approval")
    list_select_related = ("queue",)
    search_fields = ("name", "keywords", "text_regex")
    filter_horizontal = ("sources",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "position", "enabled", "continue_matching")}),
        (
            _("Conditions"),
            {
                "fields": (
                    "sources",
                    "platforms",
                    "visibility",
                    "languages",
                    "keywords",
                    "text_regex",
                    "min_followers",
                    "verified",
                    "vip",
                    "sentiment_below",
                    "sentiment_above",
                    "active_from",
                    "active_until",
                    "active_weekdays",
                    "has_open_ticket",
                )
            },
        ),
        (
            _("Actions"),
            {
                "fields": (
                    "queue",
                    "set_priority",
                    "add_tags",
                    "sla_policy",
                    "mark_noise",
                    "requires_approval",
                )
            },
        ),
        (_("Record"), {"fields": ("created_at", "updated_at")}),
    )

    def save_model(self, request: HttpRequest, obj: RoutingRule, form: forms.ModelForm, change: bool) -> None:
        from inbox.services.routing_rules import FIELDS, routing_rule_create, routing_rule_update

        names = form.changed_data if change else list(form.cleaned_data)
        values: dict[str, Any] = {}
        for name in names:
            if name in ("queue", "sla_policy"):
                related = form.cleaned_data[name]
                values[f"{name}_id"] = related.pk if related is not None else None
            elif name in FIELDS:
                values[name] = form.cleaned_data[name]
        source_ids = None
        if "sources" in form.cleaned_data and (not change or "sources" in form.changed_data):
            source_ids = [source.pk for source in form.cleaned_data["sources"]]
        if change:
            rule = routing_rule_update(
                rule_id=obj.pk, fields=values, source_ids=source_ids, actor=request.user
            )
        else:
            rule = routing_rule_create(fields=values, source_ids=source_ids or (), actor=request.user)
        obj.pk = rule.pk
        obj.position = rule.position
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        # The sources were saved by the service with the rule; there are no inlines.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: RoutingRule) -> None:
        from inbox.services.routing_rules import routing_rule_delete

        routing_rule_delete(rule_id=obj.pk, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        from inbox.services.routing_rules import routing_rule_delete

        for rule_id in list(queryset.values_list("pk", flat=True)):
            routing_rule_delete(rule_id=rule_id, actor=request.user)

    def get_urls(self) -> list:
        from django.urls import path

        name = f"{self.opts.app_label}_{self.opts.model_name}_try"
        return [path("try/", self.admin_site.admin_view(self.try_view), name=name), *super().get_urls()]

    def try_view(self, request: HttpRequest) -> Any:
        """Route a sample message with the rules in force; nothing is stored."""
        from django.core.exceptions import PermissionDenied
        from django.template.response import TemplateResponse

        from inbox.routing.engine import RuleTrace
        from inbox.selectors.routing import routing_preview

        if not self.has_view_permission(request):
            raise PermissionDenied
        form = self.TryForm(request.POST if request.method == "POST" else None)
        preview = None
        if form.is_valid():
            given = form.cleaned_data
            preview = routing_preview(
                text=given["text"],
                platform=given["platform"],
                source=given["source"],
                is_public=given["is_public"],
                followers_count=given["followers_count"],
                verified=given["verified"],
                vip=given["vip"],
                has_open_ticket=given["has_open_ticket"],
                language=given["language"],
                created_at=given["created_at"],
            )
        outcomes = {
            RuleTrace.Outcome.MATCHED: _("matched"),
            RuleTrace.Outcome.NOT_MATCHED: _("did not match"),
            RuleTrace.Outcome.NOT_REACHED: _("not reached"),
            RuleTrace.Outcome.BROKEN: _("cannot run"),
        }
        rows = [
            {
                "trace": trace,
                "outcome": outcomes[trace.outcome],
                "matched": trace.rule_id in preview.decision.rule_ids,
            }
            for trace in (preview.traces if preview is not None else ())
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Try the routing rules"),
            "form": form,
            "preview": preview,
            "rows": rows,
            "priorities": dict(Ticket.Priority.choices),
        }
        return TemplateResponse(request, "admin/inbox/routingrule/try.html", context)


class BusinessHoursInline(admin.TabularInline):
    """Weekly shifts in the calendar's local time; checked together (overlaps, never open)."""

    class FormSet(forms.BaseInlineFormSet):
        def clean(self) -> None:
            from inbox.services.sla import shift_problems
            from inbox.sla.clock import Shift

            super().clean()
            if any(self.errors):
                return
            shifts = [
                Shift(f.cleaned_data["weekday"], f.cleaned_data["start"], f.cleaned_data["end"])
                for f in self.forms
                if f.cleaned_data and not f.cleaned_data.get("DELETE")
            ]
            problems = shift_problems(always_open=self.instance.always_open, shifts=shifts)
            if problems:
                raise ValidationError(problems)

    model = BusinessHours
    formset = FormSet
    extra = 0


class CalendarHolidayInline(admin.TabularInline):
    """Custom closed dates on top of the country's public holidays."""

    model = CalendarHoliday
    extra = 0


class SlaConfigAdmin(admin.ModelAdmin):
    """Pages whose bulk deletes the per-process SLA configuration cache must hear about."""

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        from inbox.services.sla import sla_config_changed

        super().delete_queryset(request, queryset)
        sla_config_changed()


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(SlaConfigAdmin):
    """Business calendars; every change makes the SLA configuration reload everywhere."""

    class Form(forms.ModelForm):
        class Meta:
            model = BusinessCalendar
            fields = ("name", "time_zone", "always_open", "holiday_country", "holiday_subdivision")

        def clean_holiday_country(self) -> str:
            return self.cleaned_data["holiday_country"].upper()

        def clean(self) -> dict[str, Any]:
            from inbox.services.sla import region_problems

            cleaned = super().clean()
            problems = region_problems(
                time_zone=cleaned.get("time_zone", ""),
                holiday_country=cleaned.get("holiday_country", ""),
                holiday_subdivision=cleaned.get("holiday_subdivision", ""),
            )
            if problems:
                raise ValidationError(problems)
            return cleaned

    form = Form
    list_display = ("name", "time_zone", "always_open", "holiday_country", "holiday_subdivision")
    search_fields = ("name",)
    inlines = [BusinessHoursInline, CalendarHolidayInline]

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        from inbox.services.sla import sla_config_changed

        super().save_related(request, form, formsets, change)
        sla_config_changed()

    def delete_model(self, request: HttpRequest, obj: BusinessCalendar) -> None:
        from inbox.services.sla import business_calendar_delete

        business_calendar_delete(calendar=obj)


@admin.register(SlaPolicy)
class SlaPolicyAdmin(SlaConfigAdmin):
    """SLA policies; checked like in the API (one policy per queue and priority)."""

    class Form(forms.ModelForm):
        class Meta:
            model = SlaPolicy
            fields = (
                "name", "queue", "priority", "calendar", "first_response_minutes", "next_response_minutes",
                "resolution_minutes", "at_risk_ratio", "notify_leads", "raise_priority",
            )  # fmt: skip

        def clean(self) -> dict[str, Any]:
            from inbox.services.sla import policy_problems

            cleaned = super().clean()
            queue = cleaned.get("queue")
            problems = policy_problems(
                pk=self.instance.pk,
                queue_id=queue.pk if queue is not None else None,
                priority=cleaned.get("priority"),
                at_risk_ratio=cleaned.get("at_risk_ratio", self.instance.at_risk_ratio),
            )
            if problems:
                raise ValidationError(problems)
            return cleaned

    form = Form
    list_display = (
        "name", "queue", "priority", "calendar", "first_response_minutes", "next_response_minutes",
        "resolution_minutes", "at_risk_ratio", "notify_leads", "raise_priority",
    )  # fmt: skip
    list_filter = ("queue", "priority", "calendar")
    list_select_related = ("queue", "calendar")
    search_fields = ("name",)

    def save_model(self, request: HttpRequest, obj: SlaPolicy, form: forms.ModelForm, change: bool) -> None:
        from inbox.services.sla import sla_config_changed

        super().save_model(request, obj, form, change)
        sla_config_changed()

    def delete_model(self, request: HttpRequest, obj: SlaPolicy) -> None:
        from inbox.services.sla import sla_policy_delete

        sla_policy_delete(policy=obj)


@admin.register(InternalTeam)
class InternalTeamAdmin(admin.ModelAdmin):
    """Back-office teams; saved through the escalation services, which check them."""

    class Form(forms.ModelForm):
        class Meta:
            model = InternalTeam
            fields = ("name", "queue", "email", "target_minutes", "active")

        def clean(self) -> dict[str, Any]:
            data = super().clean()
            if not data.get("queue") and not data.get("email"):
                raise ValidationError(_("Give the team a desk queue, an e-mail address, or both."))
            if data.get("target_minutes") == 0:
                raise ValidationError({"target_minutes": _("Leave empty for no target, or give minutes.")})
            return data

    form = Form
    list_display = ("name", "queue", "email", "target_minutes", "active")
    list_filter = ("active",)
    list_select_related = ("queue",)
    search_fields = ("name", "email")
    autocomplete_fields = ("queue",)

    def save_model(
        self, request: HttpRequest, obj: InternalTeam, form: forms.ModelForm, change: bool
    ) -> None:
        from inbox.services.escalations import internal_team_create, internal_team_update

        fields = ("name", "queue", "email", "target_minutes", "active")
        if change:
            changed = {name: getattr(obj, name) for name in fields if name in form.changed_data}
            if changed:
                internal_team_update(team=obj, **changed)
            return
        team = internal_team_create(**{name: getattr(obj, name) for name in fields})
        obj.pk = team.pk

    def has_delete_permission(self, request: HttpRequest, obj: InternalTeam | None = None) -> bool:
        # Escalations keep their team; a team that is no longer asked is made inactive.
        return False


@admin.register(Escalation)
class EscalationAdmin(IdSearchMixin, admin.ModelAdmin):
    """Escalations are created, answered and cancelled through the services (with their events
    and e-mail); here an operator can escalate, cancel and look, not edit."""

    class Form(forms.ModelForm):
        class Meta:
            model = Escalation
            fields = ("ticket", "team", "note")

        def clean(self) -> dict[str, Any]:
            data = super().clean()
            ticket, team = data.get("ticket"), data.get("team")
            if team is not None and not team.active:
                raise ValidationError({"team": _("This team is not active.")})
            if ticket is not None and not ticket.is_active:
                raise ValidationError({"ticket": _("Only active tickets can be escalated.")})
            if (
                ticket is not None
                and team is not None
                and Escalation.objects.filter(
                    ticket=ticket, team=team, status=Escalation.Status.WAITING
                ).exists()
            ):
                raise ValidationError(_("This ticket already waits on this team."))
            return data

    form = Form
    list_display = ("id", "ticket", "team", "status", "created_by", "created_at", "due_at", "answered_at")
    list_filter = ("status", "team")
    list_select_related = ("ticket", "team", "created_by")
    search_fields = ("note", "answer", "answered_by")
    raw_id_fields = ("ticket",)
    actions = ("cancel_waiting",)
    _shown = (
        "ticket",
        "team",
        "note",
        "status",
        "created_by",
        "created_at",
        "due_at",
        "reply_token",
        "answer",
        "answered_by",
        "answered_at",
    )

    def get_fields(self, request: HttpRequest, obj: Escalation | None = None) -> tuple[str, ...]:
        return ("ticket", "team", "note") if obj is None else self._shown

    def get_readonly_fields(self, request: HttpRequest, obj: Escalation | None = None) -> tuple[str, ...]:
        return () if obj is None else self._shown

    def save_model(self, request: HttpRequest, obj: Escalation, form: forms.ModelForm, change: bool) -> None:
        from inbox.services.escalations import escalation_create

        if change:
            return  # nothing is editable
        escalation = escalation_create(ticket=obj.ticket, team=obj.team, note=obj.note, actor=request.user)
        obj.pk = escalation.pk

    def has_delete_permission(self, request: HttpRequest, obj: Escalation | None = None) -> bool:
        return False

    @admin.action(description=_("Cancel (stop waiting on the team)"), permissions=["change"])
    def cancel_waiting(self, request: HttpRequest, queryset: QuerySet) -> None:
        from inbox.services.escalations import EscalationNotWaiting, escalation_cancel

        cancelled = 0
        for escalation in queryset.filter(status=Escalation.Status.WAITING).order_by("pk"):
            try:
                escalation_cancel(escalation=escalation, actor=request.user, reason="cancelled in the admin")
            except EscalationNotWaiting:
                continue  # answered or cancelled since the page was loaded
            cancelled += 1
        self.message_user(
            request,
            ngettext("%(count)d escalation cancelled.", "%(count)d escalations cancelled.", cancelled)
            % {"count": cancelled},
            messages.SUCCESS,
        )


# --- Webhook deliveries ------------------------------------------------------------------

#: Characters of a body shown on the change page (bodies can be up to WEBHOOK_MAX_BYTES).
_BODY_SHOWN = 20_000


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(IdSearchMixin, admin.ModelAdmin):
    """Written by the webhook endpoint and its task only; an operator reads why one was rejected."""

    list_display = ("id", "received_at", "platform", "source", "delivery_id", "state", "attempts", "error_preview")
    list_filter = ("state", "platform", "source")
    actions = ("process_again",)
    list_select_related = ("source",)
    search_fields = ("delivery_id", "error")
    fields = (
        "source",
        "platform",
        "received_at",
        "delivery_id",
        "state",
        "attempts",
        "processed_at",
        "error_details",
        "headers_display",
        "body_display",
    )
    readonly_fields = fields

    @admin.display(description=_("error"))
    def error_preview(self, obj: WebhookDelivery) -> str:
        return _preview(obj.error)

    @admin.display(description=_("error"))
    def error_details(self, obj: WebhookDelivery) -> str:
        return _pre(obj.error) if obj.error else ""

    @admin.display(description=_("headers"))
    def headers_display(self, obj: WebhookDelivery) -> str:
        return _pretty_json(obj.headers)

    @admin.action(description=_("Process the selected deliveries again"))
    def process_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        # After connecting the source a delivery was meant for, or fixing a connector. What
        # was ingested before is not doubled (messages are unique per source and id).
        count = webhook_deliveries_reprocess(delivery_ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request,
            ngettext(
                "%(count)d delivery queued to be processed again.",
                "%(count)d deliveries queued to be processed again.",
                count,
            )
            % {"count": count},
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.display(description=_("body"))
    def body_display(self, obj: WebhookDelivery) -> str:
        raw = bytes(obj.body or b"")
        text = raw.decode("utf-8", errors="replace")
        try:
            shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
        except ValueError:
            shown = text
        if len(shown) > _BODY_SHOWN:
            shown = shown[:_BODY_SHOWN] + f"\n… ({len(raw)} bytes in all)"
        return _pre(shown)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False
