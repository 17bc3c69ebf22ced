"""Placeholder: replaced by the inbox page."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from inbox.views.common import desk_page


@desk_page
def placeholder(request: HttpRequest) -> HttpResponse:
    return HttpResponse("inbox")


urlpatterns = [path("", placeholder, name="inbox")]
