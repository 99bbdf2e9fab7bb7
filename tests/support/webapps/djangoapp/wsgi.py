"""The WSGI application gunicorn serves: ``tests.support.webapps.djangoapp.wsgi:application``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.webapps.djangoapp.settings")

application = get_wsgi_application()
