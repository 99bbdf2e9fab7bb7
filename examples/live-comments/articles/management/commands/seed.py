"""``manage.py seed``: demo users and articles, once (an existing user or article is kept)."""

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from articles.models import Article, Comment

USERS = ("alice", "bob")
ARTICLES = [
    ("200-ms-or-bust", "200 ms or bust: comments that arrive by themselves",
     "A comment posted on one page should appear on every other open page of the article "
     "before its author has looked up from the keyboard.\n\n"
     "This site does it with the classic stack (nginx, gunicorn, PostgreSQL, Redis) plus "
     "Tidings: the comment is saved with an outbox row in one transaction, and Tidings "
     "publishes the row after COMMIT to every reader.",
     [("alice", "Posting from one window and watching it land in the other never gets old."),
      ("bob", "Does it survive a Tidings node restart? Kill one and see the missed comments "
              "come back.")]),
    ("wsgi-and-websockets", "WSGI apps and WebSockets, side by side",
     "gunicorn's sync workers answer a request and move on; a WebSocket stays open for hours. "
     "So the long-lived connections go to Tidings, behind the same nginx, and Django keeps "
     "doing what it does best.",
     [("bob", "nginx routes /connection/ to the Tidings nodes and the rest to gunicorn.")]),
    ("full-text-search", "Searching comments with PostgreSQL",
     "Every comment is indexed with to_tsvector('english', text) in a GIN index; the search "
     "box uses websearch_to_tsquery, so quotes, OR and -minus work as on a search engine.",
     [("alice", "Try searching for cache or for \"outbox row\".")]),
]


class Command(BaseCommand):
    help = "Create the demo users (password: $LIVE_COMMENTS_DEMO_PASSWORD) and articles."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("LIVE_COMMENTS_DEMO_PASSWORD", "live-comments-demo")
        users = get_user_model().objects
        with transaction.atomic():
            people = {}
            for name in USERS:
                people[name], created = users.get_or_create(username=name)
                if created:
                    people[name].set_password(password)
                    people[name].save()
            for slug, title, body, comments in ARTICLES:
                article, created = Article.objects.get_or_create(
                    slug=slug, defaults={"title": title, "body": body})
                if created:
                    for author, text in comments:
                        Comment.objects.create(article=article, author=people[author],
                                               text=text)
        self.stdout.write(f"demo users: {', '.join(USERS)} (password {password!r})")
