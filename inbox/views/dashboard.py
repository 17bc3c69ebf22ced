"""Placeholder: replaced by the dashboard page."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from inbox.views.common import desk_page


@desk_page
def placeholder(request: HttpRequest) -> HttpResponse:
    return HttpResponse("dashboard")


urlpatterns = [path("desk/dashboard/", placeholder, name="dashboard")]
