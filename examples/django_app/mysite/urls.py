from comments import views
from django.urls import include, path

urlpatterns = [
    path("", views.index, name="index"),
    path("comments", views.add_comment, name="add-comment"),
    path("health", views.health),
    path("accounts/", include("django.contrib.auth.urls")),
    path("tidings/", include("tidings.contrib.django.urls")),  # token views, connect hook
]
