"""A Django program using the outbox app (``tidings.outbox.django``) on a real PostgreSQL, run as
its own process by tests/integration/test_outbox.py (Django's settings are process-wide)::

    python -m tests.support.outboxdjango DSN CHANNEL

It migrates (the table and the NOTIFY trigger), then, each in ``transaction.atomic()``:
commits ``{"n": 1}``, rolls back ``{"n": 2}`` (an exception inside the block), commits
``{"n": 3}`` with a date (Django's JSON encoder), and prints ``done``.
"""

from __future__ import annotations

import datetime
import sys
from urllib.parse import urlsplit


def _settings(dsn: str) -> None:
    from django.conf import settings

    url = urlsplit(dsn)
    settings.configure(
        SECRET_KEY="tidings-tests-outbox",
        INSTALLED_APPS=["tidings.outbox.django"],
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql", "NAME": url.path.lstrip("/"),
            "USER": url.username, "HOST": url.hostname, "PORT": str(url.port)}},
        USE_TZ=True,
        TIDINGS_OUTBOX={"num_partitions": 1},
    )


class Rollback(Exception):
    pass


def main(dsn: str, channel: str) -> None:
    _settings(dsn)
    import django
    from django.core.management import call_command
    from django.db import transaction

    django.setup()
    call_command("migrate", verbosity=0)
    from tidings.outbox.django import publish

    with transaction.atomic():
        publish(channel, {"n": 1}, idempotency_key="django-1")
    try:
        with transaction.atomic():
            publish(channel, {"n": 2}, idempotency_key="django-2")
            raise Rollback
    except Rollback:
        pass
    with transaction.atomic():
        publish(channel, {"n": 3, "day": datetime.date(2024, 5, 17)})
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
