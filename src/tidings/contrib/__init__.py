"""Tidings in Python web apps: ``tidings.contrib.django``, ``tidings.contrib.flask`` and
``tidings.contrib.fastapi`` (docs/django.md, docs/flask.md, docs/fastapi.md).

Each gives, in its framework's idiom, the same things: settings, a view that returns a
connection token for the logged-in user (and one for subscription tokens), ``publish`` and
publish-after-commit, and the page's connection URL, token endpoint and a channel's stream
position (render-then-subscribe). What they share, framework-free, is
:mod:`tidings.contrib.common`; each framework is imported only by its own module.
"""
