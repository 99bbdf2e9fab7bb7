"""The admin web UI's files: the built-in ones (``admin/static``, shipped in the wheel: plain
HTML, CSS and JavaScript modules written for Tidings, no build step, nothing fetched from a
CDN), or those of ``admin.web_path`` (e.g. Centrifugo's own UI build, which talks to the same
endpoints).

Served without a token: they hold no secret. The built-in pages get a strict Content Security
Policy (scripts, styles and connections to this origin only, no framing).
"""

from __future__ import annotations

import mimetypes
import posixpath
from pathlib import Path
from urllib.parse import unquote

__all__ = ["BUILTIN", "Asset", "Assets"]

BUILTIN = Path(__file__).parent / "static"
MAX_FILE = 16 << 20  # a web_path file larger than this is not served

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


class Asset:
    __slots__ = ("body", "content_type")

    def __init__(self, body: bytes, name: str) -> None:
        self.body = body
        suffix = posixpath.splitext(name)[1].lower()
        self.content_type = _TYPES.get(suffix) or (
            mimetypes.guess_type(name)[0] or "application/octet-stream")


def relative_name(path: str) -> str | None:
    """The file a path under the UI's root names (``""`` -> ``index.html``); None for a name
    that could leave the root (``..``, backslashes, NUL, hidden files)."""
    name = unquote(path).lstrip("/") or "index.html"
    if name.endswith("/"):
        name += "index.html"
    parts = name.split("/")
    if any(not p or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        return None
    return name


class Assets:
    """The UI's files by name: the built-in ones read once, a ``web_path``'s read on each
    request (so a rebuilt UI shows without a restart)."""

    def __init__(self, web_path: str = "") -> None:
        self.root = Path(web_path).resolve() if web_path else None
        self._builtin: dict[str, Asset] | None = None

    @property
    def builtin(self) -> bool:
        return self.root is None

    def find(self, path: str) -> Asset | None:
        name = relative_name(path)
        if name is None:
            return None
        if self.root is None:
            return self._builtins().get(name)
        return self._from_disk(self.root, name)

    def _builtins(self) -> dict[str, Asset]:
        if self._builtin is None:
            self._builtin = {
                p.relative_to(BUILTIN).as_posix(): Asset(p.read_bytes(), p.name)
                for p in sorted(BUILTIN.rglob("*")) if p.is_file()
            }
        return self._builtin

    @staticmethod
    def _from_disk(root: Path, name: str) -> Asset | None:
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        try:
            if path.stat().st_size > MAX_FILE:
                return None
            return Asset(path.read_bytes(), path.name)
        except OSError:
            return None
