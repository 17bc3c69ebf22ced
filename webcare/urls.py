from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from inbox.views import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include("inbox.api.urls")),
    path("webhooks/", include("inbox.api.webhooks")),
    path("", include("inbox.views.urls")),
]
