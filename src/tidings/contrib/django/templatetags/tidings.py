"""``{% load tidings %}``: ``{% tidings_subscribe "comments" as live %}`` sets ``live`` to what
the page's script needs to subscribe without a gap (``views.page_context``), with the stream
position read when the tag renders; then ``{{ live|json_script:"live" }}``.

The position must be read **before** the page's data: put the tag above the loop over a
lazy queryset, or better call ``page_context`` in the view before the query.
"""

from __future__ import annotations

from typing import Any

from django import template

from tidings.contrib.django.views import page_context

register = template.Library()


def tidings_subscribe(channel: str, subscription_token: bool = False) -> dict[str, Any]:
    return page_context(channel, subscription_token=subscription_token)


register.simple_tag(tidings_subscribe)
