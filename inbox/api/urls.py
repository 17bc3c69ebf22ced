"""REST API v1. Each area module registers its viewsets on the shared router."""

from importlib import import_module

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

#: Area modules under inbox/api/, each with ``register(router)``.
AREAS = ("routing", "sla", "team", "escalations", "sources")

router = DefaultRouter()
for area in AREAS:
    import_module(f"inbox.api.{area}").register(router)

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include(router.urls)),
]
