"""Articles and their comments. Comments are searched with PostgreSQL's full-text search: a GIN
index over ``to_tsvector('english', text)``, the very expression ``search`` filters on."""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models


class Article(models.Model):
    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title

    @property
    def channel(self) -> str:
        """Where its new comments are published (the ``comments`` namespace: history,
        recovery, presence)."""
        return f"comments:{self.slug}"

    @property
    def typing_channel(self) -> str:
        """Where readers say they are typing (the ``typing`` namespace: publish hook)."""
        return f"typing:{self.slug}"


def search_vector() -> SearchVector:
    return SearchVector("text", config="english")


class Comment(models.Model):
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField(max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["article", "id"], name="comment_article_id"),
            GinIndex(search_vector(), name="comment_text_search"),
        ]

    def __str__(self) -> str:
        return f"{self.author}: {self.text[:40]}"

    def as_json(self) -> dict[str, object]:
        """What pages render, from the database and from a publication alike."""
        return {"id": self.pk, "author": self.author.get_username(), "text": self.text,
                "created_at": self.created_at.isoformat()}
