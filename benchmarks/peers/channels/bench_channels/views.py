from channels.layers import get_channel_layer
from django.http import HttpResponse, HttpResponseNotAllowed


async def publish(request):
    """POST /publish?ch=<K>: the raw body is relayed as-is to group bench<K>."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    ch = request.GET.get("ch", "0")
    await get_channel_layer().group_send(
        f"bench{ch}", {"type": "bench.msg", "text": request.body.decode()}
    )
    return HttpResponse(b"ok", content_type="text/plain")
