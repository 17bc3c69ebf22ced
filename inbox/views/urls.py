"""Desk pages. Each area keeps its views and URL patterns in its own module."""

from django.urls import include, path

from inbox.views import common

app_name = "inbox"

urlpatterns = [
    path("desk/language", common.set_language, name="set-language"),
    path("desk/presence", common.set_presence, name="set-presence"),
    path("", include("inbox.views.inbox")),
    path("", include("inbox.views.ticket")),
    path("", include("inbox.views.templates")),
    path("", include("inbox.views.dashboard")),
]
