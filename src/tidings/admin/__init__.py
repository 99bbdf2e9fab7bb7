"""The admin web interface (docs/admin.md): login (``auth``), the endpoints and the admin API
(``endpoints``), the live tail of a channel (``tail``), the UI's files (``assets``,
``static/``). It uses the node and the server API as any caller does; ``transports/routes``
lists its routes."""
