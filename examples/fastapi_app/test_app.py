"""The FastAPI example's routes with the test kit (docs/testing.md): ``tidings`` is a Tidings
server the kit runs for each test; the app talks to it over its HTTP API."""

from app import create_app
from fastapi.testclient import TestClient

ALICE = ("alice", "alice-password")


def test_posting_a_comment_publishes_it(tidings):
    with TestClient(create_app(tidings.settings())) as client:
        with tidings.expect_publication("comments", {"id": 1, "author": "alice",
                                                     "text": "hi"}):
            response = client.post("/comments", json={"text": "hi"}, auth=ALICE)
    assert response.status_code == 201


def test_the_page_subscribes_from_where_its_data_ends(tidings):
    tidings.publish("comments", {"id": 0, "author": "bob", "text": "before"})
    with TestClient(create_app(tidings.settings())) as client:
        live = client.get("/comments", auth=ALICE).json()["live"]
        client.post("/comments", json={"text": "after"}, auth=ALICE)
        token = client.get("/tidings/token", auth=ALICE).json()["token"]
    sub = tidings.client(token=token).subscribe("comments", since=live["since"])
    assert sub.next().data["text"] == "after"  # recovered: nothing between render and subscribe


def test_tokens_are_for_logged_in_users_only(tidings):
    with TestClient(create_app(tidings.settings())) as client:
        assert client.get("/tidings/token").status_code == 401
        answer = client.get("/tidings/subscription-token?channel=notes:bob", auth=ALICE)
        assert answer.status_code == 403
