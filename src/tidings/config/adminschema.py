"""Config keys of the admin web interface (Centrifugo v6's ``admin``, ADMIN.md §1.1), and
their checks: an enabled admin needs a password and a secret unless ``insecure``, and
``insecure`` is announced loudly at start (``lint``)."""

from __future__ import annotations

import os

import msgspec

__all__ = ["RESERVED_PATHS", "RESERVED_PREFIXES", "AdminConfig", "admin_lint",
           "admin_problem", "prefix_of"]


class AdminConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The admin web interface: cluster status, channels with a live tail, connections,
    actions (docs/admin.md)."""

    enabled: bool = False  # serve the admin UI and its API (/admin/init, /admin/auth, ...)
    password: str = ""  # what /admin/auth exchanges for a token
    secret: str = ""  # the HMAC key of admin tokens (changing it logs everyone out)
    insecure: bool = False  # no login at all: local development only (a start-up warning)
    handler_prefix: str = ""  # URL prefix; the UI is at <prefix>/, its API at <prefix>/admin/
    web_path: str = ""  # serve the UI from this directory instead of the built-in one
    web_proxy_address: str = ""  # Centrifugo's UI development proxy: not supported
    external: bool = False  # with an internal listener: serve admin on the public one instead


# Paths other endpoints own (transports/routes.py): a handler prefix must not take them.
RESERVED_PATHS = ("/api", "/health", "/ready", "/emulation", "/metrics")
RESERVED_PREFIXES = ("/api/", "/connection/")


def prefix_of(admin: AdminConfig) -> str:
    """The handler prefix without its trailing ``/`` ("" serves the UI at ``/``)."""
    return admin.handler_prefix.rstrip("/")


def admin_problem(admin: AdminConfig) -> str:
    """Why an enabled admin could not work safely, naming the key ("" when it can);
    ``config.validate`` raises it as a ConfigError."""
    if not admin.enabled:
        return ""
    if not admin.insecure:
        for key in ("password", "secret"):
            if not getattr(admin, key):
                return (f"'admin.{key}' is required with 'admin.enabled' (or set "
                        "'admin.insecure' for local development only)")
    prefix = admin.handler_prefix
    stripped = prefix_of(admin)
    if prefix and (not prefix.startswith("/") or stripped in RESERVED_PATHS
                   or (stripped + "/").startswith(RESERVED_PREFIXES)
                   or any(c in prefix for c in "?#% \\")):
        return (f"invalid value for 'admin.handler_prefix': {prefix!r} (a path starting "
                "with '/' that no other endpoint uses)")
    if admin.web_path and not os.path.isdir(admin.web_path):
        return f"'admin.web_path': {admin.web_path!r} is not a directory"
    if admin.web_proxy_address:
        return ("'admin.web_proxy_address' is not supported (a UI development proxy); "
                "serve a built UI with 'admin.web_path'")
    return ""


def admin_lint(admin: AdminConfig) -> list[str]:
    """Start-up warnings: insecure mode (loud), a short secret or password."""
    if not admin.enabled:
        return []
    if admin.insecure:
        return ["!!! admin.insecure is on: the admin web interface and its API answer "
                "ANYONE who can reach them, without a password (publish, disconnect, remove "
                "history...). Use it for local development only, never on a reachable "
                "address !!!"]
    warnings = []
    if len(admin.secret.encode()) < 32:
        warnings.append("admin.secret is shorter than 32 bytes; use a longer random key")
    if len(admin.password) < 12:
        warnings.append("admin.password is shorter than 12 characters; use a longer one")
    return warnings
