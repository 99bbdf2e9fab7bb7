"""nginx + the nchan module (Debian's nginx-light and libnginx-mod-nchan) as a benchmark peer,
one worker process: ``/ws/<K>`` is a WebSocket subscriber of channel ``bench<K>``, and
``POST /publish?ch=<K>`` publishes the body to it. No message is kept
(``nchan_message_buffer_length 0``: pub/sub only, as Tidings' S4 config keeps no history).

    python benchmarks/peers/nchan/server.py --port P

Writes its config to a temporary prefix directory and execs nginx in the foreground
(``daemon off``, master + one worker, run.py stops the process group); prints the usual
``listening`` line first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
CONFIG = """
load_module {module};
daemon off;
worker_processes 1;
worker_rlimit_nofile {nofile};
error_log stderr error;
pid {prefix}/nginx.pid;
events {{ worker_connections {connections}; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    nchan_message_buffer_length 0;
    server {{
        listen {host}:{port} backlog=4096;
        location ~ ^/ws/(\\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id bench$1;
        }}
        location = /publish {{
            nchan_publisher http;
            nchan_channel_id bench$arg_ch;
        }}
    }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(MODULE):
        sys.exit(f"nchan peer: {MODULE} missing (apt-get install libnginx-mod-nchan)")
    prefix = tempfile.mkdtemp(prefix="nchan-peer-")
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(CONFIG.format(module=MODULE, prefix=prefix, host=args.host, port=args.port,
                              nofile=nofile, connections=max(nofile - 100, 1024)))
    print(f"nchan peer listening on {args.host}:{args.port}", flush=True)
    os.execv(nginx, [nginx, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
                     "-e", "stderr"])


if __name__ == "__main__":
    main()
