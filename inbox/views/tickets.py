from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from inbox.selectors.tickets import tickets_visible_to


@login_required
def ticket_list(request: HttpRequest) -> HttpResponse:
    tickets = tickets_visible_to(request.user).order_by("-last_message_at", "-id")
    page = Paginator(tickets, 50).get_page(request.GET.get("page"))
    return render(request, "inbox/ticket_list.html", {"page": page})
