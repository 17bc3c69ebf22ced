"""REST endpoints of this area (being built; see the routing/SLA/assignment issue)."""

from rest_framework.routers import DefaultRouter


def register(router: DefaultRouter) -> None:
    """Register this area's viewsets on the API router."""
