"""Test support shared by every test folder (fixtures live in the folders' conftest.py):

- ``timing``: ``TIMEOUT_FACTOR``, the time unit ``T``, ``eventually``;
- ``server``: ``tidings serve`` subprocesses, ``BASE_CONFIG``, tokens;
- ``api``: the server HTTP API (``api``, ``api_result``, ``api_publish``, ``api_sync``);
- ``sdk``: the real centrifuge-python SDK (``Clients``, event queues and logs, ``next_item``,
  ``drop_transport``);
- ``raw``: raw clients (``JsonWebSocket``, ``JsonLines``, ``RawWebSocket``, ``http_exchange``);
- ``protobuf``: varint-delimited Protobuf framing;
- ``cluster``: several nodes sharing Redis; ``redisproc``: real Redis processes;
- ``engine``: engine contract environment and event recorder;
- ``inprocess``: a node in the test's own loop; ``probe``: loop stalls and memory from outside;
- ``npm``: the pinned npm packages of the e2e tests.
"""
