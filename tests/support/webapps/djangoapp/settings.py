"""Settings of the test Django project: sessions live in signed cookies, so there is no
database; no CSRF middleware (the login form is posted by tests, the hooks by Tidings)."""

from __future__ import annotations

from typing import Any

SECRET_KEY = "tidings-tests-django-secret-key-not-for-production"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
ROOT_URLCONF = "tests.support.webapps.djangoapp.urls"
DATABASES: dict[str, Any] = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

# Errors of views (hooks included) go to the process's output: the test log shows them.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"}},
}
