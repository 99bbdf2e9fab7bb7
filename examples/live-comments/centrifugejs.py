"""centrifuge.js, the browser build of the npm package ``centrifuge``, for the site's pages:
put into a directory at start-up (or at image build), never loaded from a CDN at run time and
never copied into the repository."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from stackprocs import StackError

__all__ = ["CENTRIFUGE_VERSION", "ensure_centrifuge_js"]

CENTRIFUGE_VERSION = "5.8.0"  # npm "centrifuge", as pinned in tests/e2e/node/package-lock.json
CENTRIFUGE_SHA512 = ("ENH1jz6VeRuGb3yHNhgB0V0SqRKX+iYdtM9Du/E59m484epjNPfsgJw4UbmOmjgSXGEita1U"
                     "oOXlZ6Ba1ooT1g==")


def _verified(tarball: bytes) -> bytes:
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != CENTRIFUGE_SHA512:
        raise StackError(f"centrifuge-{CENTRIFUGE_VERSION}.tgz: sha512 mismatch ({digest})")
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        member = tar.extractfile("package/dist/centrifuge.js")
        if member is None:
            raise StackError("the centrifuge package has no dist/centrifuge.js")
        return member.read()


def _npm_tarball() -> bytes:
    """The package tarball: ``npm pack`` when npm is there (its registry and proxy settings),
    else straight from registry.npmjs.org; checked against the lock file's sha512 either way."""
    npm = shutil.which("npm")
    if npm is not None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", f"centrifuge@{CENTRIFUGE_VERSION}", "--silent"],
                           cwd=tmp, check=True, capture_output=True, timeout=120)
            return (Path(tmp) / f"centrifuge-{CENTRIFUGE_VERSION}.tgz").read_bytes()
    url = (f"https://registry.npmjs.org/centrifuge/-/centrifuge-{CENTRIFUGE_VERSION}.tgz")
    with urllib.request.urlopen(url, timeout=60) as resp:
        data: bytes = resp.read()
        return data


def ensure_centrifuge_js(vendor_dir: Path) -> Path:
    """``vendor_dir/centrifuge.js``, the browser build of the npm package ``centrifuge``
    (never a CDN at run time, never a copy in the repository). ``LIVE_COMMENTS_CENTRIFUGE_JS``
    may name a local copy instead (a machine without access to the npm registry)."""
    target = vendor_dir / "centrifuge.js"
    if target.is_file():
        return target
    vendor_dir.mkdir(parents=True, exist_ok=True)
    local = os.environ.get("LIVE_COMMENTS_CENTRIFUGE_JS")
    try:
        code = Path(local).read_bytes() if local else _verified(_npm_tarball())
    except (OSError, subprocess.SubprocessError) as exc:
        raise StackError(f"cannot get centrifuge.js {CENTRIFUGE_VERSION} from npm: {exc}") \
            from exc
    target.write_bytes(code)
    return target
