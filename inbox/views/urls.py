from django.urls import path

from inbox.views import tickets

app_name = "inbox"

urlpatterns = [
    path("", tickets.ticket_list, name="ticket-list"),
]
