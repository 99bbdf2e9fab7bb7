"""The TLS keys of a client connection Tidings makes (to Redis, to a hook's backend), and the
``ssl.SSLContext`` they mean."""

from __future__ import annotations

import ssl

import msgspec

__all__ = ["TLSConfig", "client_context"]


class TLSConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    enabled: bool = False
    cert_pem_file: str = ""
    key_pem_file: str = ""
    server_ca_pem_file: str = ""
    insecure_skip_verify: bool = False
    server_name: str = ""


def client_context(tls: TLSConfig) -> ssl.SSLContext:
    """The context for connecting with ``tls``: the CA file (else the system's), a client
    certificate when given, no verification with ``insecure_skip_verify``."""
    ctx = ssl.create_default_context(cafile=tls.server_ca_pem_file or None)
    if tls.cert_pem_file:
        ctx.load_cert_chain(tls.cert_pem_file, tls.key_pem_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
