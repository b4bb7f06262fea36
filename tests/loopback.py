"""A file server on 127.0.0.1 for the download tests: it serves byte
strings by name, answers HTTP range requests, records what it was asked,
and can break a transfer off on purpose."""

import contextlib
import http.server
import threading


class FileServer:
    """Serves `files` (name -> bytes) at `http://127.0.0.1:<port>/<name>`.

    Attributes:
        requests: `(name, Range header or None)` of every GET, in order.
        cut_after: name -> bytes after which the next full (not ranged)
            transfer of that file stops: the headers promise the whole
            file, the connection closes early. Used once per name.
        ignore_ranges: answer range requests with the whole file (200), as
            some servers do.
    """

    def __init__(self, files):
        self.files = dict(files)
        self.requests = []
        self.cut_after = {}
        self.ignore_ranges = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                range_header = self.headers.get("Range")
                server.requests.append((name, range_header))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                if range_header and not server.ignore_ranges:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(body) - 1}/{len(body)}",
                    )
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = None if range_header else server.cut_after.pop(name, None)
                self.wfile.write(body[start:cut])
                if cut is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True
        )
        self._thread.start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()


@contextlib.contextmanager
def serving(files):
    """A running `FileServer`, stopped on exit."""
    server = FileServer(files)
    try:
        yield server
    finally:
        server.stop()
