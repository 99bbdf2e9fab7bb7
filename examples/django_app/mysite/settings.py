"""Settings of the comments example: Django auth and sessions, a database from DATABASE_URL
(PostgreSQL or SQLite), and Tidings running beside the app (docs/django.md)."""

import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "change-me-example-only-0123456789abcdef")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "tidings.contrib.django",  # {% load tidings %}
    "tidings.outbox.django",  # the outbox table (COMMENTS_OUTBOX=1)
    "comments",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "tidings.contrib.django.context_processors.tidings",
    ]},
}]


def database(url: str) -> dict[str, object]:
    """``postgresql://user:password@host:port/name`` or ``sqlite:///path``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path[1:]}
    return {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path[1:],
            "USER": parts.username or "", "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "", "PORT": parts.port or ""}


DATABASES = {"default": database(os.environ.get("DATABASE_URL",
                                                f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR.parent / "static"]  # live.js
LOGIN_REDIRECT_URL = "/"

# Tidings beside the app: `tidings serve --config tidings.json`. The app signs tokens with the
# keys of the same file and publishes through its HTTP API.
TIDINGS = {
    "CONFIG": os.environ.get("COMMENTS_TIDINGS_CONFIG", str(BASE_DIR / "tidings.json")),
    "API_URL": os.environ.get("COMMENTS_TIDINGS_API_URL", "http://127.0.0.1:8000/api"),
    "CAN_SUBSCRIBE": "comments.realtime.can_subscribe",
    "USER_INFO": "comments.realtime.user_info",
}
# Publish through the outbox table instead of after the commit (docs/django.md, "Outbox").
COMMENTS_OUTBOX = os.environ.get("COMMENTS_OUTBOX") == "1"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"},
                "tidings": {"handlers": ["console"], "level": "WARNING"}},
}
