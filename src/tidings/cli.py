"""Command line: ``tidings serve|genconfig|checkconfig|gentoken|version``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import sys
import time
from typing import Any

from tidings import __version__, logs
from tidings.config import Config, ConfigError, load_config
from tidings.config.validate import require_hook_endpoints

__all__ = ["main"]

log = logging.getLogger("tidings")


def _setup_logging(config: Config) -> None:
    """``log.*``; every line names the node (``node.name``, else the host name, as the node
    itself does)."""
    node = config.node.name or socket.gethostname()
    logs.setup(config.log.level, fmt=config.log.format, file=config.log.file, node=node)


def _load(args: argparse.Namespace) -> Any:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        overrides.setdefault("http_server", {})["address"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("http_server", {})["port"] = args.port
    if getattr(args, "log_level", None):
        overrides["log"] = {"level": args.log_level}
    config, warnings = load_config(args.config, overrides=overrides or None)
    require_hook_endpoints(config)  # no hooks are set in code here
    from tidings.core.hooks import Hooks

    Hooks(config)  # python: hook endpoints must import (ConfigError)
    return config, warnings


def cmd_serve(args: argparse.Namespace) -> int:
    port_zero = args.port == 0
    if port_zero:
        args.port = None
    try:
        config, warnings = _load(args)
    except ConfigError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    if port_zero:
        config.http_server.port = 0
    try:
        _setup_logging(config)
    except OSError as exc:
        print(f"tidings: cannot open log.file {config.log.file!r}: {exc.strerror}",
              file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    key = config.client.token.hmac_secret_key
    if key and len(key.encode()) < 32:
        log.warning("client.token.hmac_secret_key is shorter than 32 bytes; use a longer key "
                    "in production")
    if not config.http_api.key and not config.http_api.insecure:
        log.warning("http_api.key is empty: the server API rejects every request (401)")
    from tidings.server import run

    run(config, config_path=args.config or "")
    return 0


def cmd_checkconfig(args: argparse.Namespace) -> int:
    try:
        _, warnings = _load(args)
    except ConfigError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print("config is valid")
    return 0


def cmd_genconfig(args: argparse.Namespace) -> int:
    config = {
        "client": {
            "token": {"hmac_secret_key": secrets.token_urlsafe(48)},
            "allowed_origins": ["http://localhost:3000"],
        },
        "http_api": {"key": secrets.token_urlsafe(32)},
        "channel": {
            "without_namespace": {
                "presence": True,
                "join_leave": True,
                "history_size": 100,
                "history_ttl": "300s",
                "force_recovery": True,
                "allow_subscribe_for_client": True,
                "allow_history_for_subscriber": True,
                "allow_presence_for_subscriber": True,
            },
            "namespaces": [],
        },
    }
    text = json.dumps(config, indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.output) and not args.force:
        print(f"tidings: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


def cmd_gentoken(args: argparse.Namespace) -> int:
    import jwt

    try:
        config, _ = _load(args)
    except ConfigError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    secret = config.client.token.hmac_secret_key
    if not secret:
        print("tidings: client.token.hmac_secret_key is not set", file=sys.stderr)
        return 2
    claims: dict[str, Any] = {"sub": args.user, "iat": int(time.time())}
    if args.ttl > 0:
        claims["exp"] = int(time.time()) + args.ttl
    if args.channel:
        claims["channel"] = args.channel
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        token = jwt.encode(claims, secret, algorithm="HS256")
    print(token)
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"tidings {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", help="config file (JSON, YAML or TOML)")

    serve = sub.add_parser("serve", help="run the server")
    with_config(serve)
    serve.add_argument("--host", help="listen address (http_server.address)")
    serve.add_argument("--port", type=int, help="listen port (http_server.port); 0 = any free")
    serve.add_argument("--log-level", help="log.level: trace, debug, info, warn, error or none")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("checkconfig", help="validate a config file")
    with_config(check)
    check.set_defaults(func=cmd_checkconfig)

    gen = sub.add_parser("genconfig", help="write a starter config with random secrets")
    gen.add_argument("-o", "--output", default="config.json", help="path, or - for stdout")
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=cmd_genconfig)

    tok = sub.add_parser("gentoken", help="print a connection JWT (HS256) for a user")
    with_config(tok)
    tok.add_argument("-u", "--user", default="", help="user ID (sub claim)")
    tok.add_argument("-t", "--ttl", type=int, default=3600 * 24 * 7, help="seconds; 0 = no exp")
    tok.add_argument("--channel", help="make a subscription token for this channel")
    tok.set_defaults(func=cmd_gentoken)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
