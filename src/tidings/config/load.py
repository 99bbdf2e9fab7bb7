"""Loading a configuration: built-in defaults < config file (JSON, YAML or TOML) <
``TIDINGS_*`` environment variables < command-line flags. Unknown keys produce a warning
(returned by :func:`load_config`, logged by the CLI); invalid values raise :class:`ConfigError`
naming the key."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from tidings.config.schema import Config, ConfigError, Namespace
from tidings.config.validate import lint, validate

__all__ = [
    "ConfigFileError",
    "config_from_dict",
    "config_from_env",
    "config_to_dict",
    "load_config",
    "parse_duration",
    "read_config_file",
]


class ConfigFileError(ConfigError):
    """The config file cannot be read or parsed (the CLI exits 2, not 1)."""


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'PREFIX+x'?)`` for the closest of ``choices``, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


# Keys whose values are durations: numbers are seconds, strings use Go syntax ("1m30s", "720h").
_DURATION_KEYS = frozenset(
    {
        "history_ttl",
        "history_meta_ttl",
        "ping_interval",
        "pong_timeout",
        "expired_close_delay",
        "expired_sub_close_delay",
        "stale_close_delay",
        "timeout",
        "connect_timeout",
        "io_timeout",
        "presence_ttl",
        "interval",
        "read_header_timeout",
        "read_timeout",
        "idle_timeout",
        "write_timeout",
        "partition_poll_interval",
        "visibility_timeout",
    }
)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, key: str) -> float:
    """Parse a Go-style duration string or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid value for {key!r}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"invalid value for {key!r}: duration must not be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "0"):
            return 0.0
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == len(text):
            return total
    raise ConfigError(f'invalid value for {key!r}: {value!r} is not a duration (e.g. "25s")')


def _schema_fields(struct: type[msgspec.Struct]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct):
        hints[f.encode_name] = f.type
    return hints


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    return None


def _list_item_struct(tp: Any) -> type[msgspec.Struct] | None:
    args = getattr(tp, "__args__", None)
    if getattr(tp, "__origin__", None) is list and args:
        return _struct_type(args[0])
    return None


def _normalize(
    raw: Mapping[str, Any], struct: type[msgspec.Struct], path: str, warnings: list[str]
) -> dict[str, Any]:
    """Drop and report unknown keys, parse durations; recurse into nested structs."""
    fields = _schema_fields(struct)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{path}{key}"
        if key not in fields:
            hint = did_you_mean(str(key), fields, path)
            warnings.append(f"unknown config key {full!r} is ignored{hint}")
            continue
        tp = fields[key]
        sub = _struct_type(tp)
        item = _list_item_struct(tp)
        if sub is not None and isinstance(value, Mapping):
            out[key] = _normalize(value, sub, f"{full}.", warnings)
        elif item is not None and isinstance(value, list):
            out[key] = [
                _normalize(v, item, f"{full}[{i}].", warnings) if isinstance(v, Mapping) else v
                for i, v in enumerate(value)
            ]
        elif key in _DURATION_KEYS:
            out[key] = parse_duration(value, full)
        elif key in _STRING_PORT_KEYS and type(value) is int:
            out[key] = str(value)  # a string in Centrifugo; a number is meant the same
        elif (
            isinstance(value, str)
            and key in _ADDRESS_KEYS
            and getattr(tp, "__origin__", None) is list
        ):
            out[key] = [value]  # one address given as a string
        else:
            out[key] = value
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON, YAML or TOML config file (chosen by extension, JSON by default)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {str(p)!r}: {exc.strerror}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text) if text.strip() else {}
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"cannot parse config file {str(p)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {str(p)!r} must hold an object at the top level")
    return data


def _env_value(text: str, tp: Any) -> Any:
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        return text
    if tp is int:
        try:
            return int(text)
        except ValueError:
            return text
    if getattr(tp, "__origin__", None) is list:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return json.loads(stripped)
            except ValueError as exc:
                raise ConfigError(f"invalid JSON list in environment variable: {exc}") from exc
        return stripped.split()
    return text


def _env_into(
    struct: type[msgspec.Struct], rest: str, value: str, prefix: str, env: Mapping[str, str]
) -> dict[str, Any] | None:
    """Match an env var suffix like ``TOKEN_HMAC_SECRET_KEY`` against struct fields."""
    fields = _schema_fields(struct)
    for name in sorted(fields, key=len, reverse=True):
        upper = name.upper()
        tp = fields[name]
        if rest == upper:
            sub = _struct_type(tp)
            if sub is not None:
                return None
            item = _list_item_struct(tp)
            if item is not None:
                return {name: _env_namespaces(value, prefix + upper, env, item)}
            return {name: _env_value(value, tp)}
        if rest.startswith(upper + "_"):
            sub = _struct_type(tp)
            if sub is not None:
                inner = _env_into(sub, rest[len(upper) + 1 :], value, f"{prefix}{upper}_", env)
                if inner is not None:
                    return {name: inner}
    return None


def _env_namespaces(value: str, prefix: str, env: Mapping[str, str],
                    item: type[msgspec.Struct] = Namespace) -> list[Any]:
    """A list of named objects (namespaces, consumers): a JSON array, or space-separated names,
    each object's keys then in ``<prefix>_<NAME>_<KEY>``."""
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            loaded = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(f"{prefix}: invalid JSON: {exc}") from exc
        if not isinstance(loaded, list):
            raise ConfigError(f"{prefix} must be a JSON array or space-separated names")
        return loaded
    items: list[Any] = []
    for name in stripped.split():
        ns: dict[str, Any] = {"name": name}
        ns_prefix = f"{prefix}_{name.upper()}_"
        for key, val in env.items():
            if key.startswith(ns_prefix):
                inner = _env_into(item, key[len(ns_prefix) :], val, ns_prefix, env)
                if inner is not None:
                    ns = _merge(ns, inner)  # nested objects (a consumer's postgresql) merge
        items.append(ns)
    return items


_ADDRESS_KEYS = frozenset({"address", "cluster_address", "sentinel_address"})
_STRING_PORT_KEYS = frozenset({"internal_port"})


def _env_names(struct: type[msgspec.Struct], prefix: str) -> list[str]:
    """Every variable name the schema reads (lists of objects by their own name only)."""
    names: list[str] = []
    for name, tp in _schema_fields(struct).items():
        sub = _struct_type(tp)
        if sub is not None:
            names += _env_names(sub, f"{prefix}{name.upper()}_")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def config_from_env(
    env: Mapping[str, str], prefix: str = "TIDINGS_", warnings: list[str] | None = None
) -> dict[str, Any]:
    """Turn ``TIDINGS_CLIENT_TOKEN_HMAC_SECRET_KEY=...`` style variables into a config dict.
    A ``TIDINGS_*`` variable naming no key is reported in ``warnings`` (when given)."""
    result: dict[str, Any] = {}
    for key in sorted(env):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest.startswith(("CHANNEL_NAMESPACES_", "CONSUMERS_")):
            continue  # read through TIDINGS_CHANNEL_NAMESPACES, TIDINGS_CONSUMERS
        piece = _env_into(Config, rest, env[key], prefix, env)
        if piece is not None:
            result = _merge(result, piece)
        elif warnings is not None:
            hint = did_you_mean(rest, _env_names(Config, ""), prefix)
            warnings.append(f"unknown environment variable {key!r} is ignored{hint}")
    return result


def _fold_aliases(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """Old key names read as their new ones: the top-level ``log_level`` is ``log.level``.
    Done per source (file, environment, flags), so a later source still overrides."""
    if "log_level" not in raw:
        return raw
    out = {k: v for k, v in raw.items() if k != "log_level"}
    level = raw["log_level"]
    log = raw.get("log")
    log = dict(log) if isinstance(log, Mapping) else {}
    if log.get("level", level) != level:
        raise ConfigError("'log_level' is the old name of 'log.level': set only one")
    out["log"] = {**log, "level": level}
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    check: bool = True,
    warnings: list[str] | None = None,
) -> tuple[Config, list[str]]:
    """Build the effective :class:`Config`; returns it with a list of warnings.

    ``check=False`` skips the cross-field checks (``checkconfig`` lists them all with
    ``validate.problems``); ``warnings``, when given, gets the warnings found before an error
    is raised too."""
    found: list[str] = [] if warnings is None else warnings
    raw: dict[str, Any] = {}
    if path is not None:
        raw = dict(_fold_aliases(read_config_file(path)))
    raw = _merge(raw, config_from_env(os.environ if env is None else env, warnings=found))
    if overrides:
        raw = _merge(raw, _fold_aliases(overrides))
    return config_from_dict(raw, check=check, warnings=found)


def config_from_dict(
    raw: Mapping[str, Any], *, check: bool = True, warnings: list[str] | None = None
) -> tuple[Config, list[str]]:
    found: list[str] = [] if warnings is None else warnings
    normalized = _normalize(_fold_aliases(raw), Config, "", found)
    try:
        config = msgspec.convert(normalized, Config)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$.", "`")
        raise ConfigError(f"invalid config: {message}") from exc
    if check:
        validate(config)
    found += lint(config)
    return config, found


def config_to_dict(config: Config) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(config)
    return result
