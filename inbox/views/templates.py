"""Reply templates: the picker and suggestions on a ticket, and the leads' management pages.

Fragments (``@login_required``, for ``static/js/desk/templates.js``):
    ``desk/tickets/<id>/templates?q=``        picker results (listbox options)
    ``desk/tickets/<id>/templates/suggested`` the three suggested templates
Pages (leads only; agents get 403):
    ``desk/templates/``                       list and search
    ``desk/templates/new``                    create
    ``desk/templates/<id>/``                  edit
    ``desk/templates/<id>/active`` (POST)     activate / deactivate
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language_info, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from inbox.models import Queue, ReplyTemplate, Ticket
from inbox.routing.assign import normalize_language
from inbox.routing.language import desk_languages
from inbox.routing.suggest import VARIABLES
from inbox.selectors.agents import queues_visible_to
from inbox.selectors.templates import (
    fallback_language,
    template_suggestions,
    templates_for_ticket,
    templates_search,
    templates_visible_to,
)
from inbox.selectors.tickets import tickets_visible_to, user_is_lead
from inbox.services.templates import (
    TemplateConflict,
    template_create,
    template_set_active,
    template_update,
)
from inbox.views.common import desk_page

#: Longest picker search accepted.
MAX_QUERY_LENGTH = 200
LIST_PAGE_SIZE = 50

#: What each variable becomes, for the help beside the editor.
VARIABLE_HELP = {
    "customer_name": gettext_lazy("the customer's name; without one, their @handle"),
    "customer_handle": gettext_lazy("the customer's @handle on the platform"),
    "agent_first_name": gettext_lazy("your first name (the agent who answers)"),
    "ticket_number": gettext_lazy("the ticket number, such as 4711"),
    "platform": gettext_lazy("the platform, such as X or Mastodon"),
}


def language_label(code: str) -> str:
    """"Dutch (nl)" in the interface language; an unknown code stays a code."""
    # Django knows Chinese only by script (zh-hans, zh-hant).
    for candidate in (code, f"{code}-hans"):
        try:
            return f"{get_language_info(candidate)['name_translated']} ({code})"
        except KeyError:
            continue
    return code


def _visible_ticket(request: HttpRequest, ticket_id: int) -> Ticket:
    return get_object_or_404(tickets_visible_to(request.user).select_related("customer"), pk=ticket_id)


def _query(request: HttpRequest) -> str:
    query = request.GET.get("q", "")
    if len(query) > MAX_QUERY_LENGTH:
        raise ValidationError(_("Search at most %(n)d characters.") % {"n": MAX_QUERY_LENGTH})
    return query


# --- Fragments on a ticket ---------------------------------------------------------------------


@login_required
@require_GET
def picker_results(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _visible_ticket(request, ticket_id)
    try:
        query = _query(request)
    except ValidationError as exc:
        return HttpResponseBadRequest(exc.messages[0], content_type="text/plain; charset=utf-8")
    items = templates_for_ticket(ticket=ticket, agent=request.user, query=query)
    return render(request, "inbox/desk/_template_results.html", {
        "ticket": ticket, "items": items, "query": query.strip(),
        "fallback_language": fallback_language(),
    })


@login_required
@require_GET
def suggestions(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _visible_ticket(request, ticket_id)
    items = template_suggestions(ticket=ticket, agent=request.user)
    return render(request, "inbox/desk/_template_suggestions.html", {"ticket": ticket, "items": items})


# --- Management (leads) -----------------------------------------------------------------------


def _require_lead(request: HttpRequest) -> None:
    if not user_is_lead(request.user):
        raise PermissionDenied(_("Only team leads manage reply templates."))


class TemplateForm(forms.Form):
    """Name, shortcut, queue, active and one text per desk language (empty: no variant)."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=120)
    shortcut = forms.CharField(
        label=gettext_lazy("Shortcut"), max_length=41,
        help_text=gettext_lazy("Agents type /shortcut in the reply box, such as /delay."),
    )
    queue = forms.ModelChoiceField(
        label=gettext_lazy("Queue"), queryset=Queue.objects.none(), required=False,
        empty_label=gettext_lazy("All queues"),
    )
    active = forms.BooleanField(
        label=gettext_lazy("Active (offered to agents)"), required=False, initial=True,
    )
    version = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, user, languages: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].queryset = queues_visible_to(user).order_by("name")
        self.fields["shortcut"].widget.attrs.update(
            {"aria-describedby": "id_shortcut-help", "autocapitalize": "none", "spellcheck": "false"}
        )
        self.languages = languages
        for code in languages:
            self.fields[f"variant_{code}"] = forms.CharField(
                label=language_label(code), required=False, strip=False,
                widget=forms.Textarea(attrs={"rows": 4, "data-variant-language": code, "dir": "auto"}),
            )

    def main_fields(self) -> list[forms.BoundField]:
        return [self["name"], self["shortcut"], self["queue"]]

    def has_field_errors(self) -> bool:
        return any(field.errors for field in self)

    def variant_fields(self) -> list[forms.BoundField]:
        return [self[f"variant_{code}"] for code in self.languages]

    def variants(self) -> dict[str, str]:
        return {code: self.cleaned_data.get(f"variant_{code}", "") for code in self.languages}

    def clean_version(self) -> datetime | None:
        value = self.cleaned_data.get("version") or ""
        if not value:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(_("The form is damaged; reload the page.")) from None

    def add_service_errors(self, error: ValidationError) -> None:
        for field, messages in error.message_dict.items():
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)


def _form_languages(template: ReplyTemplate | None) -> list[str]:
    """The desk languages, then any other language the template already has a text in."""
    languages = list(desk_languages())
    if template is not None:
        for variant in template.variants.all():
            code = normalize_language(variant.language)
            if code not in languages:
                languages.append(code)
    return languages


def _initial(template: ReplyTemplate) -> dict:
    initial = {
        "name": template.name, "shortcut": template.shortcut, "queue": template.queue_id,
        "active": template.active, "version": template.updated_at.isoformat(),
    }
    for variant in template.variants.all():
        initial[f"variant_{normalize_language(variant.language)}"] = variant.body
    return initial


def _render_form(request: HttpRequest, form: TemplateForm, template: ReplyTemplate | None, status: int = 200):
    return render(request, "inbox/desk/template_form.html", {
        "nav": "templates", "form": form, "template": template,
        "variables": [(name, VARIABLE_HELP[name]) for name in VARIABLES],
        "variable_names": " ".join(VARIABLES),
    }, status=status)


def _list_url(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return reverse("inbox:template-list")


@desk_page
@require_GET
def template_list(request: HttpRequest) -> HttpResponse:
    _require_lead(request)
    query = request.GET.get("q", "").strip()[:MAX_QUERY_LENGTH]
    state = request.GET.get("state", "")
    if state not in ("", "active", "inactive"):
        return HttpResponseBadRequest(_("Unknown state filter."), content_type="text/plain; charset=utf-8")
    templates = templates_visible_to(request.user)
    if state:
        templates = templates.filter(active=state == "active")
    matching = templates_search(templates, query)
    page = Paginator(matching, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        (template, [normalize_language(v.language) for v in template.variants.all()])
        for template in page.object_list
    ]
    filters = {key: value for key, value in (("q", query), ("state", state)) if value}
    # "Template /x created/saved." after a redirect, for a template that exists (no spoofed notices).
    notices = {}
    for key in ("created", "saved"):
        shortcut = request.GET.get(key, "")
        if shortcut and templates_visible_to(request.user).filter(shortcut=shortcut).exists():
            notices[key] = shortcut
    return render(request, "inbox/desk/template_list.html", {
        "nav": "templates", "rows": rows, "page": page, "query": query, "state": state,
        "filter_query": urlencode(filters), "total": len(matching), "notices": notices,
    })


@desk_page
@require_http_methods(["GET", "POST"])
def template_new(request: HttpRequest) -> HttpResponse:
    _require_lead(request)
    languages = _form_languages(None)
    if request.method == "GET":
        return _render_form(request, TemplateForm(user=request.user, languages=languages), None)
    form = TemplateForm(request.POST, user=request.user, languages=languages)
    if form.is_valid():
        try:
            template = template_create(
                actor=request.user, name=form.cleaned_data["name"], shortcut=form.cleaned_data["shortcut"],
                queue=form.cleaned_data["queue"], active=form.cleaned_data["active"], variants=form.variants(),
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            return redirect(f"{reverse('inbox:template-list')}?{urlencode({'created': template.shortcut})}")
    return _render_form(request, form, None, status=400)


@desk_page
@require_http_methods(["GET", "POST"])
def template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    _require_lead(request)
    template = get_object_or_404(templates_visible_to(request.user), pk=template_id)
    languages = _form_languages(template)
    if request.method == "GET":
        form = TemplateForm(user=request.user, languages=languages, initial=_initial(template))
        return _render_form(request, form, template)
    form = TemplateForm(request.POST, user=request.user, languages=languages)
    status = 400
    if form.is_valid():
        try:
            template_update(
                actor=request.user, template=template, name=form.cleaned_data["name"],
                shortcut=form.cleaned_data["shortcut"], queue=form.cleaned_data["queue"],
                active=form.cleaned_data["active"], variants=form.variants(),
                expected_updated_at=form.cleaned_data["version"],
            )
        except TemplateConflict as exc:
            # Saving again after a look at the other change overwrites it on purpose.
            current = get_object_or_404(templates_visible_to(request.user), pk=template_id)
            form.data = form.data.copy()
            form.data["version"] = current.updated_at.isoformat()
            form.add_error(None, str(exc))
            form.add_error(None, _("Your text is kept below. Open the template again in a new tab to see "
                                   "the other change, then save what should stay."))
            status = 409
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            return redirect(f"{reverse('inbox:template-list')}?{urlencode({'saved': template.shortcut})}")
    return _render_form(request, form, template, status=status)


@login_required
@require_POST
def template_active(request: HttpRequest, template_id: int) -> HttpResponse:
    _require_lead(request)
    template = get_object_or_404(templates_visible_to(request.user), pk=template_id)
    active = request.POST.get("active")
    if active not in ("0", "1"):
        return HttpResponseBadRequest(_("Say active=1 or active=0."), content_type="text/plain; charset=utf-8")
    template_set_active(actor=request.user, template=template, active=active == "1")
    return redirect(_list_url(request))


urlpatterns = [
    path("desk/tickets/<int:ticket_id>/templates", picker_results, name="template-picker"),
    path("desk/tickets/<int:ticket_id>/templates/suggested", suggestions, name="template-suggestions"),
    path("desk/templates/", template_list, name="template-list"),
    path("desk/templates/new", template_new, name="template-new"),
    path("desk/templates/<int:template_id>/", template_edit, name="template-edit"),
    path("desk/templates/<int:template_id>/active", template_active, name="template-active"),
]
