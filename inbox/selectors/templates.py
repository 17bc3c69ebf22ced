"""Reply templates for a ticket (picker, suggestions) and for the leads' management pages.

A ticket is offered the active templates of its queue and the global ones (no queue), each
in the ticket's language or else in the desk's fallback language (``fallback_language``),
with the ticket's variables filled in. The caller passes a ticket it took from
``inbox.selectors.tickets.tickets_visible_to``; nothing here widens what a user may see:
the customer messages used to rank suggestions only order the list and are never shown.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import F, Prefetch, Q, QuerySet, Window
from django.db.models.functions import RowNumber

from inbox.models import Message, Platform, ReplyTemplate, ReplyTemplateVariant, Ticket
from inbox.routing.assign import normalize_language
from inbox.routing.suggest import (
    HISTORY_LIMIT,
    AnsweredMessage,
    TemplateCandidate,
    choose_variant,
    rank_templates,
    render_template,
    template_variables,
)
from inbox.selectors.tickets import user_is_lead

#: Most templates one picker search shows.
PICKER_LIMIT = 50
#: Suggested templates above the composer.
SUGGESTION_COUNT = 3


def fallback_language() -> str:
    """The desk's default language: a template without the ticket's language is shown in this one."""
    return normalize_language(settings.LANGUAGE_CODE) or "en"


def fold(text: str) -> str:
    """Text for matching a search: case and accents ignored ("Café" finds "cafe")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def templates_for_queue(queue_id: int | None) -> QuerySet[ReplyTemplate]:
    """Active templates usable on a ticket of ``queue_id``: that queue's and the global ones."""
    scope = Q(queue__isnull=True)
    if queue_id is not None:
        scope |= Q(queue_id=queue_id)
    return (
        ReplyTemplate.objects.filter(scope, active=True)
        .prefetch_related(Prefetch("variants", queryset=ReplyTemplateVariant.objects.order_by("language")))
        .order_by("name", "pk")
    )


def ticket_template_values(*, ticket: Ticket, agent: AbstractBaseUser) -> dict[str, str]:
    """The variable values of ``ticket`` answered by ``agent`` (see ``template_variables``)."""
    contact = ticket.contact
    try:
        platform = str(Platform(ticket.source.platform).label)
    except ValueError:  # a platform added by a plugin connector: its code is its name
        platform = ticket.source.platform
    return template_variables(
        customer_name=ticket.customer.display_name,
        contact_name=contact.display_name,
        handle=contact.handle,
        agent_first_name=getattr(agent, "first_name", ""),
        agent_username=agent.get_username(),
        ticket_number=ticket.pk,
        platform=platform,
    )


@dataclass(frozen=True, slots=True)
class TicketTemplate:
    """One template as offered on a ticket: its variant chosen and its variables filled in."""

    id: int
    name: str
    shortcut: str
    language: str
    is_fallback: bool
    #: The rendered body (plain text, escaped when shown).
    text: str
    #: Variables with no value for this ticket, still written in ``text``.
    missing: tuple[str, ...]
    usage_count: int
    #: Suggestions only: "history", "text" or "usage" (see ``rank_templates``).
    reason: str = ""


def _offer(template: ReplyTemplate, *, ticket: Ticket, values: dict[str, str], reason: str = "") -> TicketTemplate | None:
    variants = {normalize_language(v.language): v for v in template.variants.all()}
    choice = choose_variant(variants, language=ticket.language, fallback_language=fallback_language())
    if choice is None:
        return None
    rendered = render_template(variants[choice.language].body, values)
    return TicketTemplate(
        id=template.pk, name=template.name, shortcut=template.shortcut, language=choice.language,
        is_fallback=choice.is_fallback, text=rendered.text, missing=rendered.missing,
        usage_count=template.usage_count, reason=reason,
    )


def _search_rank(template: ReplyTemplate, query: str, body: str) -> int | None:
    """0: the shortcut starts with the query; 1: the name has it; 2: every word is somewhere; None: no match."""
    shortcut, name = fold(template.shortcut), fold(template.name)
    if shortcut.startswith(query):
        return 0
    if query in name:
        return 1
    haystack = " ".join((shortcut, name, fold(body)))
    if all(word in haystack for word in query.split()):
        return 2
    return None


def templates_for_ticket(
    *, ticket: Ticket, agent: AbstractBaseUser, query: str = "", limit: int = PICKER_LIMIT
) -> list[TicketTemplate]:
    """The picker's list: templates usable on ``ticket`` matching ``query``, rendered for it.

    ``query`` (a leading ``/`` is ignored) matches the shortcut, the name or the text of the
    variant shown, ignoring case and accents; every word must occur. Order: shortcut matches,
    then name matches, then text matches; within each the most used first, then by name.
    Without a query: the most used first. Two queries.
    """
    query = " ".join(fold(query).strip().lstrip("/").split())
    values = ticket_template_values(ticket=ticket, agent=agent)
    found: list[tuple[tuple, TicketTemplate]] = []
    for template in templates_for_queue(ticket.queue_id):
        offered = _offer(template, ticket=ticket, values=values)
        if offered is None:
            continue
        tier = 0
        if query:
            body = next(v.body for v in template.variants.all() if normalize_language(v.language) == offered.language)
            tier = _search_rank(template, query, body)
            if tier is None:
                continue
        found.append(((tier, -template.usage_count, fold(template.name), template.pk), offered))
    found.sort(key=lambda pair: pair[0])
    return [offered for _key, offered in found[:limit]]


def last_customer_message(ticket: Ticket) -> Message | None:
    return (
        Message.objects.filter(ticket=ticket, direction=Message.Direction.INBOUND)
        .order_by("-created_at", "-id")
        .only("id", "text", "language")
        .first()
    )


def answered_messages(
    *, template_ids: list[int], language: str, exclude_message_id: int | None = None
) -> dict[int, list[AnsweredMessage]]:
    """Template id → the customer messages replies started from it answered, newest first.

    At most ``HISTORY_LIMIT`` per template, in ``language`` when it is known; one query.
    """
    if not template_ids:
        return {}
    replies = Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        reply_template_id__in=template_ids,
        in_reply_to__direction=Message.Direction.INBOUND,
    )
    if language:
        replies = replies.filter(in_reply_to__language=language)
    if exclude_message_id is not None:
        replies = replies.exclude(in_reply_to_id=exclude_message_id)
    rows = (
        replies.annotate(
            recency=Window(
                RowNumber(), partition_by=[F("reply_template_id")],
                order_by=[F("created_at").desc(), F("id").desc()],
            )
        )
        .filter(recency__lte=HISTORY_LIMIT)
        .order_by("reply_template_id", "recency")
        .values_list("reply_template_id", "in_reply_to__text", "in_reply_to__language")
    )
    answered: dict[int, list[AnsweredMessage]] = defaultdict(list)
    for template_id, text, message_language in rows:
        answered[template_id].append(AnsweredMessage(text=text, language=message_language))
    return dict(answered)


def template_suggestions(
    *, ticket: Ticket, agent: AbstractBaseUser, limit: int = SUGGESTION_COUNT
) -> list[TicketTemplate]:
    """The templates most likely to answer the customer's last message (``rank_templates``).

    A fixed number of queries, however many templates and replies there are: templates,
    their variants, the last customer message, the answered messages.
    """
    templates = list(templates_for_queue(ticket.queue_id))
    if not templates:
        return []
    language = normalize_language(ticket.language)
    last = last_customer_message(ticket)
    history = answered_messages(
        template_ids=[t.pk for t in templates], language=language,
        exclude_message_id=last.pk if last is not None else None,
    )
    candidates = [
        TemplateCandidate(
            template_id=t.pk, name=t.name, usage_count=t.usage_count,
            texts={v.language: v.body for v in t.variants.all()}, answered=history.get(t.pk, ()),
        )
        for t in templates
    ]
    ranked = rank_templates(
        last.text if last is not None else "", candidates,
        language=language, fallback_language=fallback_language(), limit=limit,
    )
    by_id = {t.pk: t for t in templates}
    values = ticket_template_values(ticket=ticket, agent=agent)
    suggestions = []
    for item in ranked:
        offered = _offer(by_id[item.template_id], ticket=ticket, values=values, reason=item.reason)
        if offered is not None:
            suggestions.append(offered)
    return suggestions


# --- Management (leads) --------------------------------------------------------------------------


def templates_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[ReplyTemplate]:
    """Every template (active or not) with its queue and variants for leads; none for anyone else."""
    base = (
        ReplyTemplate.objects.select_related("queue")
        .prefetch_related(Prefetch("variants", queryset=ReplyTemplateVariant.objects.order_by("language")))
        .order_by("name", "pk")
    )
    return base if user_is_lead(user) else base.none()


def templates_search(templates: QuerySet[ReplyTemplate] | list[ReplyTemplate], query: str) -> list[ReplyTemplate]:
    """Templates whose shortcut, name or any variant's text has every word of ``query`` (case and
    accents ignored), in the given order."""
    words = fold(query).strip().lstrip("/").split()
    if not words:
        return list(templates)
    matching = []
    for template in templates:
        haystack = " ".join(
            [fold(template.shortcut), fold(template.name), *(fold(v.body) for v in template.variants.all())]
        )
        if all(word in haystack for word in words):
            matching.append(template)
    return matching
