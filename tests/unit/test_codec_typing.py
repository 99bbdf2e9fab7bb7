"""Calls through a transport's codec are type-checked: both codec modules implement the
``Codec`` protocol, so mypy rejects a misspelt method or a wrong argument (issue 10)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SNIPPET = '''
from tidings.protocol import codec, pbcodec
from tidings.protocol.codecs import Codec
from tidings.protocol.messages import Push, Reply

def send(c: Codec) -> bytes:
    return c.encode_reply(Reply())

json_codec: Codec = codec
protobuf_codec: Codec = pbcodec
send(codec)
{wrong}
'''


def check(tmp_path: Path, wrong: str) -> tuple[str, int]:
    path = tmp_path / "snippet.py"
    path.write_text(SNIPPET.format(wrong=wrong))
    out, err, status = api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path),
                                str(path)])
    return out + err, status


def test_correct_calls_pass(tmp_path: Path) -> None:
    out, status = check(tmp_path, "json_codec.encode_push(Push())")
    assert status == 0, out


def test_a_misspelt_or_mistyped_codec_call_is_an_error(tmp_path: Path) -> None:
    out, status = check(tmp_path, "json_codec.encode_replies(Reply())\n"
                                  "protobuf_codec.encode_push(Reply())")
    assert status == 1
    assert '"Codec" has no attribute "encode_replies"' in out, out
    assert 'Argument 1 to "encode_push" of "Codec" has incompatible type "Reply"' in out, out
