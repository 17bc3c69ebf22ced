"""Project middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation


class AgentLanguageMiddleware:
    """Serve a signed-in agent in the interface language of their profile.

    Runs after ``LocaleMiddleware`` (which chose from the cookie and the browser) and
    overrides it for agents, so the language follows the person from device to device.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.known = {code for code, _name in settings.LANGUAGES}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        profile = getattr(user, "agent_profile", None) if user is not None and user.is_authenticated else None
        if profile is not None and profile.ui_language in self.known:
            translation.activate(profile.ui_language)
            request.LANGUAGE_CODE = profile.ui_language
        response = self.get_response(request)
        if profile is not None:
            response.headers.setdefault("Content-Language", request.LANGUAGE_CODE)
        return response
