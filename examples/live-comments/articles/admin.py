from django.contrib import admin

from articles.models import Article, Comment

admin.site.register(Article, prepopulated_fields={"slug": ("title",)})
admin.site.register(Comment, list_display=("article", "author", "text", "created_at"))
