"""Command line: ``tidings serve|genconfig|checkconfig|defaultconfig|gentoken|gensubtoken|
checktoken|version``.

Logs go to stdout (or ``log.file``); the command line's own errors go to stderr, one line each,
``tidings: ...``. Exit codes: 0 done, 1 a problem found (an invalid config, an invalid token, a
port in use), 2 the config cannot be used at all (unreadable file, bad value for ``serve``)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import secrets
import socket
import sys
from typing import Any

import yaml

from tidings import __version__, logs
from tidings.config import Config, ConfigError, load_config, parse_duration
from tidings.config.describe import describe, render
from tidings.config.load import ConfigFileError
from tidings.config.validate import problems, require_hook_endpoints
from tidings.config.workersschema import worker_count
from tidings.tokentool import TokenToolError, check_token, sign_token
from tidings.worker import apply_spec, parse_spec, tie_to_parent

__all__ = ["main"]

log = logging.getLogger("tidings")


def _error(message: str) -> None:
    print(f"tidings: {message}", file=sys.stderr)


def _setup_logging(config: Config) -> None:
    """``log.*``; every line names the node (``node.name``, else the host name, as the node
    itself does)."""
    node = config.node.name or socket.gethostname()
    logs.setup(config.log.level, fmt=config.log.format, file=config.log.file, node=node)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "host", None) is not None:
        overrides.setdefault("http_server", {})["address"] = args.host
    if getattr(args, "port", None) is not None:
        overrides.setdefault("http_server", {})["port"] = args.port
    if getattr(args, "log_level", None):
        overrides["log"] = {"level": args.log_level}
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    return overrides


def _load(args: argparse.Namespace) -> tuple[Config, list[str]]:
    config, warnings = load_config(args.config, overrides=_overrides(args) or None)
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
        spec = parse_spec(args.worker_of) if args.worker_of else None
    except ConfigError as exc:
        _error(str(exc))
        return 2
    if port_zero:
        config.http_server.port = 0
    if spec is not None:  # one of --workers N: the supervisor warned about the config already
        apply_spec(config, spec)
        tie_to_parent(spec)
    try:
        _setup_logging(config)
    except OSError as exc:
        _error(f"cannot open log.file {config.log.file!r}: {exc.strerror}")
        return 2
    if spec is None:
        _serve_warnings(config, warnings)
    from tidings.consumers import ConsumerStartError
    from tidings.server import ListenError, run

    try:
        if spec is None and worker_count(config) > 1:
            from tidings.workers import supervise

            return supervise(config, config_path=args.config or "")
        run(config, config_path=args.config or "", worker=spec)
    except ListenError as exc:
        _error(str(exc.strerror))
        return 1
    except ConsumerStartError as exc:  # Centrifugo: "error initializing consumers"
        _error(f"error initializing consumers: {exc}")
        return 1
    return 0


def _serve_warnings(config: Config, warnings: list[str]) -> None:
    for warning in warnings:
        log.warning("%s", warning)
    key = config.client.token.hmac_secret_key
    if key and len(key.encode()) < 32:
        log.warning("client.token.hmac_secret_key is shorter than 32 bytes; use a longer key "
                    "in production")
    if not config.http_api.key and not config.http_api.insecure:
        log.warning("http_api.key is empty: the server API rejects every request (401)")


def cmd_checkconfig(args: argparse.Namespace) -> int:
    """Every problem at once: warnings (unknown keys and variables, doubtful settings) and
    errors (bad values, settings nothing could work with). Exit 1 on any error."""
    warnings: list[str] = []
    errors: list[str] = []
    try:
        config, _ = load_config(args.config, check=False, warnings=warnings)
    except ConfigFileError as exc:
        _error(str(exc))
        return 2
    except ConfigError as exc:  # a value of the wrong type: no Config to check further
        errors.append(str(exc))
    else:
        errors = problems(config)
        try:
            from tidings.core.hooks import Hooks

            Hooks(config)  # python: hook endpoints must import
        except ValueError as exc:  # ConfigError, or a config problems() reported already
            if not any(str(exc) in error for error in errors):
                errors.append(str(exc))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 1
    print("config is valid")
    return 0


def _starter_config() -> dict[str, Any]:
    return {
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


def _dump(config: dict[str, Any], path: str) -> str:
    """The config in the format the extension names (JSON otherwise, and for stdout).

    TOML needs a writer (``tomllib`` only reads): ``tomli_w``, a dependency; an install
    without it gets a clear refusal."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".yaml", ".yml"):
        text: str = yaml.safe_dump(config, sort_keys=False)
        return text
    if suffix == ".toml":
        try:
            tomli_w = importlib.import_module("tomli_w")
        except ImportError:
            raise ConfigError("writing TOML needs the tomli-w package (pip install tomli-w); "
                              "or write .json or .yaml") from None
        toml: str = tomli_w.dumps(config)
        return toml
    return json.dumps(config, indent=2) + "\n"


def cmd_genconfig(args: argparse.Namespace) -> int:
    try:
        text = _dump(_starter_config(), args.output)
    except ConfigError as exc:
        _error(str(exc))
        return 1
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    if os.path.exists(args.output) and not args.force:
        _error(f"{args.output} exists (use --force to overwrite)")
        return 1
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        _error(f"cannot write {args.output}: {exc.strerror}")
        return 1
    print(f"wrote {args.output}")
    return 0


def cmd_defaultconfig(args: argparse.Namespace) -> int:
    sys.stdout.write(render(describe()))
    return 0


def _token_claims(args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if getattr(args, "channels", None):
        extra["channels"] = [c.strip() for c in args.channels.split(",") if c.strip()]
    if getattr(args, "channel", None):
        extra["channel"] = args.channel
    if args.info is not None:
        try:
            extra["info"] = json.loads(args.info)
        except ValueError as exc:
            raise TokenToolError(f"--info is not JSON: {exc}") from exc
    return extra


def _sign(args: argparse.Namespace, *, subscription: bool) -> int:
    try:
        config, _ = _load(args)
    except ConfigError as exc:
        _error(str(exc))
        return 2
    try:
        token = sign_token(config, args.user, ttl=args.ttl, subscription=subscription,
                           extra=_token_claims(args))
    except TokenToolError as exc:
        _error(str(exc))
        return 1
    print(token)
    return 0


def cmd_gentoken(args: argparse.Namespace) -> int:
    if args.channel:
        _error("'gentoken --channel' is deprecated: use 'gensubtoken --channel' (signed the "
               "same way: client.subscription_token when enabled)")
        return _sign(args, subscription=True)
    return _sign(args, subscription=False)


def cmd_gensubtoken(args: argparse.Namespace) -> int:
    return _sign(args, subscription=True)


def cmd_checktoken(args: argparse.Namespace) -> int:
    try:
        config, _ = _load(args)
    except ConfigError as exc:
        _error(str(exc))
        return 2
    try:
        claims = check_token(config, args.token.strip(), subscription=args.sub)
    except TokenToolError as exc:
        _error(str(exc))
        return 1
    print(json.dumps(claims, indent=2, sort_keys=True))
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"tidings {__version__}")
    return 0


def _ttl(text: str) -> float:
    """Seconds, or a Go duration ("1h", "30m", "90s"); 0 = no expiry."""
    try:
        return parse_duration(text, "--ttl")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f'{text!r} is not seconds or a duration ("1h", '
                                         '"30m", "90s")') from exc


def _with_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="config file (JSON, YAML or TOML)")


def _token_args(p: argparse.ArgumentParser, *, user_required: bool) -> None:
    _with_config(p)
    p.add_argument("-u", "--user", default="", required=user_required,
                   help="user ID (the sub claim, or client.token.user_id_claim)")
    p.add_argument("-t", "--ttl", type=_ttl, default=3600 * 24 * 7.0,
                   help='lifetime: seconds or a duration ("1h", "30m"); 0 = no exp (7 days)')
    p.add_argument("--info", help="JSON for the info claim (e.g. '{\"name\": \"Ann\"}')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tidings {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    _with_config(serve)
    serve.add_argument("--host", help="listen address (http_server.address)")
    serve.add_argument("--port", type=int, help="listen port (http_server.port); 0 = any free")
    serve.add_argument("--log-level", help="log.level: trace, debug, info, warn, error or none")
    serve.add_argument("--workers", help='processes sharing the port (workers): a number, or '
                                         '"auto" for one per core; >1 needs engine.type redis')
    serve.add_argument("--worker-of", help=argparse.SUPPRESS)  # set by the supervisor only
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("checkconfig", help="list every problem of a config (exit 1 if any)")
    _with_config(check)
    check.set_defaults(func=cmd_checkconfig)

    gen = sub.add_parser("genconfig", help="write a starter config with random secrets")
    gen.add_argument("-o", "--output", default="config.json",
                     help="path (.json, .yaml/.yml or .toml), or - for JSON on stdout")
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=cmd_genconfig)

    for name in ("defaultconfig", "configdoc"):
        doc = sub.add_parser(name, help="print every config key with its default")
        doc.set_defaults(func=cmd_defaultconfig)

    tok = sub.add_parser("gentoken", help="print a connection JWT (HS256) for a user")
    _token_args(tok, user_required=False)
    tok.add_argument("--channels", help="comma-separated channels to subscribe (channels claim)")
    tok.add_argument("--channel", help="deprecated: use gensubtoken")
    tok.set_defaults(func=cmd_gentoken)

    subtok = sub.add_parser("gensubtoken", help="print a subscription JWT (HS256)")
    _token_args(subtok, user_required=True)
    subtok.add_argument("--channel", required=True, help="the channel claim")
    subtok.set_defaults(func=cmd_gensubtoken)

    chk = sub.add_parser("checktoken", help="verify a JWT with the configured keys, print it")
    _with_config(chk)
    chk.add_argument("token")
    chk.add_argument("--sub", action="store_true", help="a subscription token")
    chk.set_defaults(func=cmd_checktoken)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage error: its code, as a return
        return exc.code if isinstance(exc.code, int) else 1
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
