"""Unit tests for tidings.logs (levels incl. trace, the JSON and text formatters, set-up) and
the ``log.*`` config keys (file, ``TIDINGS_LOG_*``, the old ``log_level``, the CLI flag)."""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings import cli, logs
from tidings.config import ConfigError, load_config
from tidings.config.load import config_from_dict

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(level: int = logging.INFO, msg: str = "hello %s", *args: object,
           exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("tidings.test", level, __file__, 1, msg, args or ("world",),
                            exc_info)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup() changes the root logger: put back its level and handlers afterwards."""
    root = logging.getLogger()
    start = logging.getLogger(logs.STARTUP_LOGGER)
    level, handlers, start_level = root.level, list(root.handlers), start.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    start.setLevel(start_level)
    logging.captureWarnings(False)


# ------------------------------------------------------------------ levels


@pytest.mark.parametrize(
    ("name", "number"),
    [("trace", 5), ("debug", logging.DEBUG), ("info", logging.INFO),
     ("warn", logging.WARNING), ("warning", logging.WARNING), ("error", logging.ERROR),
     ("none", logs.NONE), ("TRACE", 5), (" Info ", logging.INFO)],
)
def test_level_number(name: str, number: int) -> None:
    assert logs.level_number(name) == number


def test_level_number_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="loud"):
        logs.level_number("loud")


def test_trace_is_below_debug_and_named() -> None:
    assert logs.TRACE < logging.DEBUG
    assert logging.getLevelName(logs.TRACE) == "TRACE"
    assert logs.NONE > logging.CRITICAL


@pytest.mark.parametrize(
    ("number", "name"),
    [(logs.TRACE, "trace"), (logging.DEBUG, "debug"), (logging.INFO, "info"),
     (logging.WARNING, "warn"), (logging.ERROR, "error"), (logging.CRITICAL, "error")],
)
def test_level_name_is_centrifugos(number: int, name: str) -> None:
    assert logs.level_name(number) == name


# ------------------------------------------------------------------ formatters


def test_json_line_has_the_fixed_keys_then_context() -> None:
    line = logs.JsonFormatter("node-1").format(
        record(logging.WARNING, client="c1", user="u1", transport="websocket", code=3001,
               other="not a field"))
    assert "\n" not in line
    out = json.loads(line)
    assert list(out)[:5] == ["time", "level", "logger", "msg", "node"]
    assert RFC3339_UTC.match(out["time"]), out["time"]
    assert (out["level"], out["logger"], out["msg"], out["node"]) == (
        "warn", "tidings.test", "hello world", "node-1")
    assert (out["client"], out["user"], out["transport"], out["code"]) == (
        "c1", "u1", "websocket", 3001)
    assert "other" not in out  # only the names in FIELDS are printed
    assert set(out) <= {"time", "level", "logger", "msg", "node", *logs.FIELDS}


def test_json_time_is_utc() -> None:
    rec = record()
    rec.created, rec.msecs = 0.25, 250.0
    assert json.loads(logs.JsonFormatter().format(rec))["time"] == "1970-01-01T00:00:00.250Z"


def test_json_traceback_and_odd_values() -> None:
    out = json.loads(logs.JsonFormatter().format(
        record(logging.ERROR, exc=True, channel="a\ud800\n", error=ValueError("bad"))))
    assert "RuntimeError: boom" in out["traceback"]
    assert out["channel"] == "a\ud800\n"  # escaped on the wire (ASCII JSON)
    assert out["error"] == "bad"


def test_json_trace_level() -> None:
    assert json.loads(logs.JsonFormatter().format(record(logs.TRACE)))["level"] == "trace"


def test_text_line_as_before_plus_context() -> None:
    fmt = logs.TextFormatter("n1")
    line = fmt.format(record(logging.INFO, client="c1", user="", channel="a b",
                             reason='say "hi"', code=4000))
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO tidings.test: hello world ",
                    line), line
    assert line.endswith(' node=n1 client=c1 user="" channel="a b" code=4000 '
                         'reason="say \\"hi\\""'), line


def test_text_line_without_context_is_unchanged() -> None:
    line = logs.TextFormatter().format(record())
    assert line.endswith("INFO tidings.test: hello world"), line


def test_text_quotes_control_characters() -> None:
    line = logs.TextFormatter().format(record(channel="x\ny"))
    assert "\n" not in line and 'channel="x\\ny"' in line


def test_text_traceback_follows() -> None:
    text = logs.TextFormatter("n").format(record(logging.ERROR, exc=True, client="c"))
    first, rest = text.split("\n", 1)
    assert first.endswith("node=n client=c") and "RuntimeError: boom" in rest


class Named:
    name = "sse"


class Conn:
    client_id = "cid"
    user = "u"
    transport = Named()


def test_client_fields() -> None:
    assert logs.client_fields(Conn(), channel="ch") == {
        "client": "cid", "user": "u", "transport": "sse", "channel": "ch"}
    assert logs.client_fields(Conn(), user="other")["user"] == "other"


def test_fields_are_not_log_record_attributes() -> None:
    taken = set(logging.LogRecord("n", 0, "", 0, "", None, None).__dict__) | {"message",
                                                                             "asctime"}
    assert not taken & set(logs.FIELDS)


# ------------------------------------------------------------------ setup


@pytest.mark.usefixtures("restore_logging")
def test_setup_json_to_file_at_trace(tmp_path: Path) -> None:
    path = tmp_path / "tidings.log"
    handler = logs.setup("trace", fmt="json", file=str(path), node="n9")
    log = logging.getLogger("tidings.unit")
    log.log(logs.TRACE, "deep", extra={"client": "c"})
    log.debug("shallow")
    handler.flush()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["level"], x["msg"], x["node"]) for x in lines] == [
        ("trace", "deep", "n9"), ("debug", "shallow", "n9")]
    assert lines[0]["client"] == "c"


@pytest.mark.usefixtures("restore_logging")
def test_setup_captures_python_warnings(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    handler = logs.setup("info", fmt="json", file=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    handler.flush()
    [line] = [json.loads(x) for x in path.read_text().splitlines()]
    assert (line["level"], line["logger"]) == ("warn", "py.warnings")
    assert "careful" in line["msg"]


@pytest.mark.usefixtures("restore_logging")
def test_setup_replaces_its_own_handler(tmp_path: Path) -> None:
    first = logs.setup("info", file=str(tmp_path / "a.log"))
    second = logs.setup("info", file=str(tmp_path / "b.log"))
    handlers = logging.getLogger().handlers
    assert second in handlers and first not in handlers


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("level", "shown"), [("info", True), ("warn", True),
                                              ("error", True), ("none", False)])
def test_start_line_shows_at_every_level_but_none(tmp_path: Path, level: str,
                                                  shown: bool) -> None:
    path = tmp_path / "t.log"
    handler = logs.setup(level, file=str(path))
    logging.getLogger(logs.STARTUP_LOGGER).info("tidings listening on http://h:1")
    logging.getLogger("tidings.other").info("an info line")
    handler.flush()
    text = path.read_text()
    assert ("listening on http://h:1" in text) is shown
    assert ("an info line" in text) is (level == "info")


# ------------------------------------------------------------------ config keys


def test_defaults() -> None:
    config, warnings = config_from_dict({})
    assert (config.log.level, config.log.file, config.log.format) == ("info", "", "text")
    assert warnings == []


def test_log_object_is_a_known_key() -> None:
    config, warnings = config_from_dict(
        {"log": {"level": "trace", "format": "json", "file": "/tmp/t.log"}})
    assert (config.log.level, config.log.format, config.log.file) == (
        "trace", "json", "/tmp/t.log")
    assert warnings == []


@pytest.mark.parametrize("level", ["trace", "debug", "info", "warn", "warning", "error", "none"])
def test_old_log_level_key_is_an_alias(level: str) -> None:
    config, warnings = config_from_dict({"log_level": level})
    assert config.log.level == level
    assert warnings == []


def test_old_and_new_key_together() -> None:
    config, _ = config_from_dict({"log_level": "debug", "log": {"level": "debug",
                                                                "format": "json"}})
    assert (config.log.level, config.log.format) == ("debug", "json")
    with pytest.raises(ConfigError, match=r"log_level.*log\.level"):
        config_from_dict({"log_level": "debug", "log": {"level": "error"}})


@pytest.mark.parametrize(("raw", "key"), [({"log": {"level": "loud"}}, "'log.level'"),
                                          ({"log_level": "loud"}, "'log_level'"),
                                          ({"log": {"format": "xml"}}, "'log.format'")])
def test_invalid_values_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert key in str(caught.value)


def test_env_vars() -> None:
    config, warnings = load_config(env={"TIDINGS_LOG_LEVEL": "trace",
                                        "TIDINGS_LOG_FORMAT": "json",
                                        "TIDINGS_LOG_FILE": "/var/log/t.log"})
    assert (config.log.level, config.log.format, config.log.file) == (
        "trace", "json", "/var/log/t.log")
    assert warnings == []


@pytest.mark.parametrize("in_file", [{"log": {"level": "debug", "format": "json"}},
                                     {"log_level": "debug", "log": {"format": "json"}}])
def test_env_overrides_file_and_flag_overrides_env(tmp_path: Path,
                                                   in_file: dict[str, object]) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(in_file))
    config, _ = load_config(path, env={})
    assert (config.log.level, config.log.format) == ("debug", "json")
    config, _ = load_config(path, env={"TIDINGS_LOG_LEVEL": "error"})
    assert (config.log.level, config.log.format) == ("error", "json")
    config, _ = load_config(path, env={"TIDINGS_LOG_LEVEL": "error"},
                            overrides={"log_level": "trace"})
    assert config.log.level == "trace"


def test_cli_log_level_flag(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"log": {"level": "info", "format": "json"}}))
    args = cli.build_parser().parse_args(["serve", "-c", str(path), "--log-level", "trace"])
    config, _ = cli._load(args)
    assert (config.log.level, config.log.format) == ("trace", "json")
