from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from comments.models import Comment
from tidings.contrib.django import publish_on_commit
from tidings.contrib.django.views import page_context

BANNED = ("spam",)


class Rejected(Exception):
    pass


def moderate(comment: Comment) -> None:
    if any(word in comment.text.lower() for word in BANNED):
        raise Rejected("comment rejected")


def health(request):
    return HttpResponse(b"ok", content_type="text/plain")


@login_required
def index(request):
    live = page_context("comments")  # the stream position first...
    comments = list(Comment.objects.select_related("author").order_by("pk"))  # ...then the data
    return render(request, "comments/index.html", {"comments": comments, "live": live})


def _publish(comment: Comment) -> None:
    from django.conf import settings

    if settings.COMMENTS_OUTBOX:  # a row in this transaction: cannot be lost
        from tidings.outbox.django import publish

        publish("comments", comment.as_json(), idempotency_key=f"comment-{comment.pk}")
    else:  # after the commit, over HTTP
        publish_on_commit("comments", comment.as_json())


@login_required
@require_POST
def add_comment(request):
    text = request.POST.get("text", "").strip()
    if not text:
        return HttpResponseBadRequest("empty comment")
    try:
        with transaction.atomic():
            comment = Comment.objects.create(author=request.user, text=text)
            _publish(comment)
            moderate(comment)  # raises: the transaction rolls back, nothing is published
    except Rejected as exc:
        return HttpResponseBadRequest(str(exc))
    return redirect("index")
