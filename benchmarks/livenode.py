"""What soak.py and fuzz_live.py share: one live Tidings node in a subprocess (its config, start,
stop, /proc figures), HS256 connection tokens, client WebSocket frames and an API client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt

HOST = "127.0.0.1"
SECRET = "live-secret-0123456789-0123456789-abcdef"
API_KEY = "live-api-key"


def config(secret: str = SECRET, api_key: str = API_KEY) -> dict[str, Any]:
    """Every channel feature open to clients, every transport on, warnings only."""
    return {
        "client": {"token": {"hmac_secret_key": secret}},
        "http_api": {"key": api_key},
        "channel": {"without_namespace": {
            "presence": True, "join_leave": True, "history_size": 100, "history_ttl": "300s",
            "force_recovery": True, "allow_subscribe_for_client": True,
            "allow_publish_for_subscriber": True, "allow_presence_for_subscriber": True,
            "allow_history_for_subscriber": True}},
        "log_level": "warning",
        "uni_http_stream": {"enabled": True}, "uni_sse": {"enabled": True},
        "http_stream": {"enabled": True}, "sse": {"enabled": True},
    }


def start_server(pythonpath: str | None, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``tidings serve`` on a free port (core 0 when there are two), logging to
    ``workdir/server.log``; exits the script when it does not start within 30 s."""
    cfg = workdir / "config.json"
    cfg.write_text(json.dumps(config()))
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "tidings", "serve", "--config", str(cfg), "--port", "0"]
    if shutil.which("taskset") and {0, 1} <= os.sched_getaffinity(0):
        cmd = ["taskset", "-c", "0", *cmd]
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if m := re.search(r"listening on http://[\d.]+:(\d+)", log.read_text(errors="replace")):
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_server(proc)
    sys.exit(f"server did not start; log:\n{log.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proc_stats(pid: int) -> dict[str, float]:
    """RSS (MiB), open fds and threads of a process; ProcessLookupError once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss, threads = (re.search(rf"{k}:\s+(\d+)", status) for k in ("VmRSS", "Threads"))
        if rss is None or threads is None:  # a zombie
            raise ProcessLookupError(pid)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError as exc:
        raise ProcessLookupError(pid) from exc
    return {"rss_mib": int(rss[1]) / 1024, "fds": fds, "threads": int(threads[1])}


def alive(pid: int) -> bool:
    try:
        proc_stats(pid)
    except ProcessLookupError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (NaN once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def token(sub: Any, secret: str = SECRET, **claims: Any) -> str:
    """A connection JWT (HS256) for user ``sub``."""
    return jwt.encode({"sub": sub, **claims}, secret, algorithm="HS256")


def frame(payload: bytes, opcode: int = 1, *, fin: bool = True, masked: bool = True,
          rsv: int = 0, length: int | None = None, width: int | None = None,
          key: bytes | None = None) -> bytes:
    """A WebSocket frame, masked (as a client's must be) unless told. ``length``: the length the
    header claims (a lie when it is not the payload's); ``width``: bytes of extended length (0, 2
    or 8; the fewest that fit unless given); ``key``: the mask key (random unless given)."""
    n = len(payload) if length is None else length
    if width is None:
        width = 0 if n < 126 else 2 if n < 65536 else 8
    head = bytes(((0x80 if fin else 0) | rsv | opcode,
                  (0x80 if masked else 0) | (126 if width == 2 else 127 if width else n)))
    head += n.to_bytes(width, "big") if width else b""
    if not masked:
        return head + payload
    key = os.urandom(4) if key is None else key
    k = int.from_bytes((key * (len(payload) // 4 + 1))[: len(payload)], "little")
    return head + key + (int.from_bytes(payload, "little") ^ k).to_bytes(len(payload), "little")


def abort(writer: asyncio.StreamWriter) -> None:
    """Drop a connection with a TCP reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Api:
    """A keep-alive HTTP/1.1 connection to the server API, one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self, method: str, params: Any) -> Any:
        """The decoded answer; on any failure the connection is dropped and the error raised."""
        data = json.dumps(params).encode()
        try:
            async with asyncio.timeout(10):
                if self.conn is None:
                    self.conn = await asyncio.open_connection(HOST, self.port)
                r, w = self.conn
                w.write(f"POST /api/{method} HTTP/1.1\r\nHost: {HOST}\r\n"
                        f"X-API-Key: {API_KEY}\r\nContent-Length: {len(data)}\r\n\r\n"
                        .encode() + data)
                head = await r.readuntil(b"\r\n\r\n")
                m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                body = await r.readexactly(int(m.group(1)) if m else 0)
            if not head.startswith(b"HTTP/1.1 200") or b"connection: close" in head.lower():
                raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
            return json.loads(body)
        except BaseException:
            if self.conn is not None:
                self.conn[1].close()
            self.conn = None
            raise
