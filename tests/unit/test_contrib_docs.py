"""The framework pages (docs/django.md, flask.md, fastapi.md, testing.md) show the example
apps' files as they are: every code block introduced by a file name (`` `examples/...`: ``)
equals that file, and each page shows the files it must. The files themselves run in
tests/integration/test_contrib_*.py and test_testkit.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^`(examples/[^`]+)`:\n\n```[a-z]*\n(.*?)^```$", re.M | re.S)
PAGES = {
    "django.md": ["examples/django_app/mysite/settings.py", "examples/django_app/mysite/urls.py",
                  "examples/django_app/comments/views.py",
                  "examples/django_app/comments/templates/comments/index.html",
                  "examples/static/live.js", "examples/django_app/tidings.json"],
    "flask.md": ["examples/flask_app/app.py", "examples/flask_app/templates/index.html"],
    "fastapi.md": ["examples/fastapi_app/app.py", "examples/fastapi_app/index.html"],
    "testing.md": ["examples/django_app/test_comments.py", "examples/django_app/conftest.py",
                   "examples/fastapi_app/test_app.py"],
}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_code_blocks_equal_the_example_files(page: str) -> None:
    text = (ROOT / "docs" / page).read_text()
    shown = {name: body for name, body in BLOCK.findall(text)}
    for name in PAGES[page]:
        assert name in shown, f"{page} does not show {name}"
    for name, body in shown.items():
        assert body == (ROOT / name).read_text(), f"{page}: the block of {name} differs"
