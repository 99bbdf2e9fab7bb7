"""Settings of the live-comments site (docs/tutorial.md).

Everything that differs between machines comes from ``LIVE_COMMENTS_*`` environment variables
(``stack.py`` and ``docker-compose.yml`` set the same names); the defaults are the ports the
one command (``./run``) uses.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("LIVE_COMMENTS_STATE_DIR", BASE_DIR / ".state"))


def env(name: str, default: str) -> str:
    return os.environ.get(f"LIVE_COMMENTS_{name}", default)


SECRET_KEY = env("SECRET_KEY", "live-comments-insecure-example-key-change-me-0123456789")
DEBUG = env("DEBUG", "") == "1"
ALLOWED_HOSTS = env("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # full-text search (SearchVector, SearchQuery)
    "tidings.contrib.django",  # token views, the connect hook view, page_context
    "tidings.outbox.django",  # the centrifugo_outbox table, tidings.outbox.django.publish
    "articles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "livecomments.urls"
WSGI_APPLICATION = "livecomments.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]


def database(url: str) -> dict[str, object]:
    """``postgresql://user:password@host:port/name``; connections kept open by each worker."""
    parts = urlsplit(url)
    return {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "", "PASSWORD": parts.password or "",
            "HOST": parts.hostname or "", "PORT": parts.port or "",
            "CONN_MAX_AGE": 300, "CONN_HEALTH_CHECKS": True}


DATABASES = {"default": database(env("DATABASE_URL",
                                     "postgresql://postgres@127.0.0.1:5433/live_comments"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: the article page's cache, and sessions (read through the cache: the connect hook
# looks the session up on every WebSocket connect).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": env("REDIS_URL", "redis://127.0.0.1:6380/1"),
                      "KEY_PREFIX": "live-comments"}}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
ARTICLE_CACHE_SECONDS = 60  # well inside the comments namespace's history_ttl (24 h)

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(STATE_DIR / "static")))  # nginx serves it
STATICFILES_DIRS = [
    BASE_DIR.parent / "static",  # examples/static/live.js: render-then-subscribe
    ("vendor", Path(env("VENDOR_DIR", str(STATE_DIR / "vendor")))),  # centrifuge.js (npm)
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# Tidings: its config file gives the API key (and token keys) to the app; the app reaches the
# server API through nginx's internal listener; pages connect to /connection/ on this site.
TIDINGS = {
    "CONFIG": env("TIDINGS_CONFIG", str(BASE_DIR / "tidings.json")),
    "API_URL": env("TIDINGS_API_URL", "http://127.0.0.1:8090/api"),
    "CONNECTION_URL": "/connection/websocket",
    "USER_INFO": "articles.realtime.user_info",
}
TIDINGS_OUTBOX = {"num_partitions": 4}  # = consumers[0].postgresql.num_partitions

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"},
                "tidings": {"handlers": ["console"], "level": "WARNING"}},
}
