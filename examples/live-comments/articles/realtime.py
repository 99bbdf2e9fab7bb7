"""What Tidings asks the site (docs/hooks.md).

- ``user_info``: what other clients see of a connection (presence), put in by the connect
  hook, ``tidings.contrib.django``'s ``connect_view`` (settings ``TIDINGS["USER_INFO"]``),
  which logs a WebSocket in with the Django session cookie.
- ``typing``: the publish hook of the ``typing:`` namespace (``publish_proxy_enabled``): a
  browser publishes ``{"typing": true}``; the hook checks it and replaces it with what others
  are shown, the user's name from the database, so nobody can type in someone else's name.
"""

from typing import Any

from django.contrib.auth import get_user_model

from articles.models import Article
from tidings.hooks import HookError, PublishRequest, PublishResult


def user_info(user: Any) -> dict[str, str]:
    return {"name": user.get_username()}


def typing(req: PublishRequest) -> PublishResult:
    data = req.data
    if not (isinstance(data, dict) and set(data) == {"typing"}
            and isinstance(data["typing"], bool)):
        raise HookError(400, 'send {"typing": true} or {"typing": false}')
    slug = req.channel.partition(":")[2]
    if not Article.objects.filter(slug=slug).exists():
        raise HookError(404, "no such article")
    name = (get_user_model().objects.filter(pk=req.user)
            .values_list("username", flat=True).first())
    if name is None:
        raise HookError(403, "permission denied")
    return PublishResult(data={"user": req.user, "name": name, "typing": data["typing"]},
                         skip_history=True)
