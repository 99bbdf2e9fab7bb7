import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_channels.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # must run before importing consumers

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import BenchConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/<int:k>", BenchConsumer.as_asgi())]),
    }
)
