"""``manage.py setup``: what the site needs before it serves, in one process: the database
schema (``migrate``, the outbox table and its NOTIFY trigger included), the static files for
nginx (``collectstatic``) and the demo data (``seed``)."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "migrate, collectstatic and seed"

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("seed")
