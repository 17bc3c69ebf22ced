"""What every desk page shares: the page decorator and the base layout's context."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from inbox.models import AgentProfile
from inbox.selectors.realtime import last_event_id
from inbox.selectors.tickets import user_is_lead
from inbox.services.desk import DeskError, agent_set_ui_language
from inbox.services.presence import agent_set_presence


def desk_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A full desk page: signed in, and the live-update position taken *before* the
    view reads anything, so the page's socket catches up on every event the page
    might have missed (an event seen twice is dropped by its id)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        request.desk_last_event_id = last_event_id()
        return view(request, *args, **kwargs)

    return wrapper


def desk_context(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    profile = getattr(user, "agent_profile", None)
    return {
        "desk_last_event_id": getattr(request, "desk_last_event_id", None),
        "desk_is_lead": user_is_lead(user),
        "desk_presence": profile.presence if profile is not None else None,
    }


@login_required
@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Language switcher: stored on the agent's profile, so it follows them everywhere."""
    try:
        agent_set_ui_language(user=request.user, language=request.POST.get("language", ""))
    except DeskError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    return redirect(_safe_next(request))


@login_required
@require_POST
def set_presence(request: HttpRequest) -> HttpResponse:
    """The agent's own status in the top bar: available (online) or away."""
    profile = AgentProfile.objects.filter(user=request.user).first()
    if profile is None:
        return HttpResponse(gettext("This account has no agent profile."), status=400, content_type="text/plain")
    presence = request.POST.get("presence", "")
    if presence not in (AgentProfile.Presence.ONLINE, AgentProfile.Presence.AWAY):
        return HttpResponse(gettext("Choose available or away."), status=400, content_type="text/plain")
    profile = agent_set_presence(agent=profile, presence=presence, actor=request.user)
    if request.headers.get("X-Requested-With") == "fetch":
        return JsonResponse({"presence": profile.presence})
    return redirect(_safe_next(request))


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return "/"
    return target
