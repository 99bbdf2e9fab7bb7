"""Django set up for plain pytest (with pytest-django, its ``django_db(transaction=True)``
marker does this): the example's settings on a fresh SQLite database, migrated once."""

import os
import tempfile

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/test.sqlite3"
django.setup()


@pytest.fixture(scope="session", autouse=True)
def database():
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
