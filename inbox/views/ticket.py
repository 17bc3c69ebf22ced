"""Placeholder: replaced by the ticket page."""


urlpatterns: list = []
