"""A minimal Django project answering Tidings' connect and subscribe hooks from its own
session (signed-cookie sessions: no database). Served by gunicorn (``wsgi.application``)."""
