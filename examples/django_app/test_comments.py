"""The Django example's views with the test kit (docs/testing.md): ``tidings`` is a Tidings
server the kit runs for each test; the app is pointed at it with ``override_settings``."""

import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.template import Context, Template
from django.test import Client, override_settings


@pytest.fixture
def client(tidings):
    """A logged-in user's browser, with the app publishing to the kit's server."""
    name = f"user-{uuid.uuid4().hex[:8]}"
    User.objects.create_user(name, password="pw")
    browser = Client()
    browser.login(username=name, password="pw")
    with override_settings(TIDINGS={**settings.TIDINGS, **tidings.settings()}):
        yield browser


def test_posting_a_comment_publishes_it_after_commit(client, tidings):
    with tidings.expect_publication("comments", match=lambda c: c["text"] == "hi"):
        response = client.post("/comments", {"text": "hi"})
    assert response.status_code == 302


def test_a_rejected_comment_publishes_nothing(client, tidings):
    with tidings.expect_no_publication("comments"):
        response = client.post("/comments", {"text": "buy spam"})
    assert response.status_code == 400


def test_the_page_renders_the_stream_position(client, tidings):
    tidings.publish("comments", {"id": 0, "text": "before"})
    page = client.get("/").content.decode()
    assert f'"offset": {tidings.position("comments").offset}' in page
    tag = Template('{% load tidings %}{% tidings_subscribe "comments" as live %}'
                   "{{ live.since.offset }} {{ live.tokenUrl }}")
    assert tag.render(Context()) == f"{tidings.position('comments').offset} /tidings/token"
