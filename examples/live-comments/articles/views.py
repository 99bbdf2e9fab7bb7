"""The site's pages. The article page is where the architecture meets: its comments come from
PostgreSQL through a Redis cache, its live updates from Tidings, and it is rendered so that the
two cannot miss each other (``comments_snapshot``)."""

import json
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from articles.models import Article, Comment, search_vector
from tidings.contrib.django import position, realtime
from tidings.outbox.django import publish

BANNED = ("spam",)
MARK_START, MARK_STOP = "\x02", "\x03"  # search highlights, turned into <mark> after escaping


class Rejected(Exception):
    """A check that runs after the comment is written refused it: the transaction rolls back."""


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


def index(request: HttpRequest) -> HttpResponse:
    articles = Article.objects.annotate(num_comments=Count("comments"))
    return render(request, "articles/index.html", {"articles": articles})


def _snapshot_key(article: Article) -> str:
    return f"article-comments:{article.pk}"


def comments_snapshot(article: Article) -> dict[str, Any]:
    """The article's comments, rendered, and the stream position they were read at; cached in
    Redis. Render-then-subscribe: the position is read **before** the comments, so every
    comment committed after the read is published after it, and the page, subscribing with
    ``since`` that position, receives it (a few may repeat rendered ones: the page dedupes by
    id). A cached snapshot stays consistent for as long as the channel's history reaches back
    to its position (``history_ttl`` 24 h, far beyond ``ARTICLE_CACHE_SECONDS``)."""
    snapshot: dict[str, Any] | None = cache.get(_snapshot_key(article))
    if snapshot is None:
        since = position(article.channel)  # first the stream position...
        comments = list(article.comments.select_related("author"))  # ...then the data
        snapshot = {"since": since, "count": len(comments),
                    "html": render_to_string("articles/_comments.html",
                                             {"comments": comments})}
        cache.set(_snapshot_key(article), snapshot, settings.ARTICLE_CACHE_SECONDS)
    return snapshot


def article(request: HttpRequest, slug: str) -> HttpResponse:
    article = get_object_or_404(Article, slug=slug)
    snapshot = comments_snapshot(article)
    live = None
    if request.user.is_authenticated:  # the connect hook lets logged-in users in
        live = realtime().page(article.channel, snapshot["since"])
        live["typingChannel"] = article.typing_channel
        live["me"] = request.user.get_username()
    return render(request, "articles/article.html", {
        "article": article, "comments_html": mark_safe(snapshot["html"]),
        "count": snapshot["count"], "live": live})


def moderate(comment: Comment) -> None:
    """Stands for any check that fails after the writes (a constraint, a trigger, a later
    step of the request): the comment and its outbox row roll back together."""
    if any(word in comment.text.lower() for word in BANNED):
        raise Rejected("This comment was rejected by moderation.")


def _comment_text(request: HttpRequest) -> str:
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return ""
        text = body.get("text", "") if isinstance(body, dict) else ""
        return text.strip() if isinstance(text, str) else ""
    return str(request.POST.get("text", "")).strip()


def _wants_json(request: HttpRequest) -> bool:
    return request.content_type == "application/json"


@require_POST
def post_comment(request: HttpRequest, slug: str) -> HttpResponse:
    """Save a comment and publish it through the outbox: the publication is a row written in
    the same transaction, which Tidings publishes after COMMIT, and never after a rollback."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Log in to comment."}, status=401)
    article = get_object_or_404(Article, slug=slug)
    text = _comment_text(request)
    if not text or len(text) > 2000:
        return JsonResponse({"error": "A comment has 1 to 2000 characters."}, status=400)
    try:
        with transaction.atomic():
            comment = Comment.objects.create(article=article, author=request.user, text=text)
            publish(article.channel, comment.as_json(), idempotency_key=f"comment-{comment.pk}")
            moderate(comment)
    except Rejected as exc:
        if _wants_json(request):
            return JsonResponse({"error": str(exc)}, status=422)
        return redirect(article_url(article))
    cache.delete(_snapshot_key(article))
    if _wants_json(request):
        return JsonResponse(comment.as_json(), status=201)
    return redirect(article_url(article))


def article_url(article: Article) -> str:
    return f"/articles/{article.slug}/"


def _highlight(snippet: str) -> str:
    """The headline PostgreSQL made from user text, escaped, with its matches marked."""
    return escape(snippet).replace(MARK_START, "<mark>").replace(MARK_STOP, "</mark>")


def search(request: HttpRequest) -> HttpResponse:
    """Full-text search over comments: ``websearch_to_tsquery`` against the GIN-indexed
    ``to_tsvector('english', text)``, best matches first."""
    q = request.GET.get("q", "").strip()[:200]
    results = []
    if q:
        query = SearchQuery(q, config="english", search_type="websearch")
        found = (Comment.objects.annotate(document=search_vector())
                 .filter(document=query)
                 .annotate(rank=SearchRank(search_vector(), query),
                           snippet=SearchHeadline("text", query, config="english",
                                                  start_sel=MARK_START, stop_sel=MARK_STOP))
                 .select_related("article", "author").order_by("-rank", "-id")[:50])
        results = [{"comment": c, "snippet": mark_safe(_highlight(c.snippet))}
                   for c in found]
    return render(request, "articles/search.html", {"q": q, "results": results})


def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("index")
    return render(request, "registration/signup.html", {"form": form})
