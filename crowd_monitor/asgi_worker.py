"""The gunicorn worker class for production: uvicorn, with the WebSocket options the live dashboard needs.

Per-message compression is off. Live updates are JSON objects of about 200 bytes, which compression barely
shrinks, while compressing one for each of a thousand watching dashboards cost the single-threaded server a tenth
of its CPU, a zlib context per connection (about 45 KiB each) and the clients' CPU to inflate them: with it off,
delivery p99 to 1,000 clients went from 289-913 ms to 237 ms (bench/ws_fanout.py, docs/PERFORMANCE.md).
scripts/run, the benchmarks and the tests' server pass the same option to uvicorn.
"""

from uvicorn_worker import UvicornWorker


class CrowdMonitorUvicornWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "ws_per_message_deflate": False}
