"""Minimal Django settings for the Channels benchmark peer: no database,
no templates, no middleware, in-memory channel layer."""

SECRET_KEY = "tidings-benchmark-peer-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["daphne", "channels"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench_channels.urls"
ASGI_APPLICATION = "bench_channels.asgi.application"
DATABASES: dict = {}
USE_TZ = True
USE_I18N = False
CHANNEL_LAYERS = {
    # Library defaults: capacity=100 messages per consumer channel (excess is
    # dropped silently by group_send), expiry=60 s.
    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
