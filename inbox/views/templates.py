"""Placeholder: replaced by the templates page."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from inbox.views.common import desk_page


@desk_page
def placeholder(request: HttpRequest) -> HttpResponse:
    return HttpResponse("templates")


urlpatterns = [path("desk/templates/", placeholder, name="template-list")]
