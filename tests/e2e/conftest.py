"""Fixtures of the end-to-end tests: the pinned npm packages they run (tests/e2e/node)."""

from __future__ import annotations

import pytest

from tests.support.npm import E2E_PACKAGES, ensure_node_modules


@pytest.fixture(scope="session", autouse=True)
def node_modules() -> None:
    """Every e2e test runs Node: install the pinned packages (``npm ci``) once if one is
    missing."""
    ensure_node_modules(*E2E_PACKAGES)
