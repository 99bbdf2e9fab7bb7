"""The WSGI application gunicorn serves: ``gunicorn livecomments.wsgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "livecomments.settings")
application = get_wsgi_application()
