from channels.generic.websocket import AsyncWebsocketConsumer

READY = '{"ready":true}'


class BenchConsumer(AsyncWebsocketConsumer):
    """Joins group bench<K> (K from the URL /ws/<K>) and relays group messages."""

    async def connect(self) -> None:
        self.group = f"bench{self.scope['url_route']['kwargs']['k']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send(text_data=READY)

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        pass  # clients only listen

    async def bench_msg(self, event) -> None:  # handler for {"type": "bench.msg"}
        await self.send(text_data=event["text"])
