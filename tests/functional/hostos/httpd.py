"""A real static HTTP server on 127.0.0.1 with Range support and faults.

``http.server``'s own handler ignores ``Range``; this one answers 206 for
``bytes=N-`` like any production web server, logs every request, and
can cut transfers short to test resuming and truncation, or send more
than the file (a hostile mirror).
"""

import http.server
import os
import threading


class ContentServer:
    """Serves ``directory`` on a free port in a thread."""

    def __init__(self, directory):
        self.directory = directory
        self.requests = []
        self.cut_once = set()
        self.cut_always = set()
        # rel -> (extra bytes, announce them in Content-Length or not)
        self.oversize = {}
        self.sent = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *_args):
                pass

            def do_GET(self):
                server._serve(self)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                """Clients killed mid-transfer are expected here."""

        self.httpd = Server(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = 'http://127.0.0.1:%d/' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, h):
        rel = h.path.lstrip('/').split('?')[0]
        rng = h.headers.get('Range')
        self.requests.append((rel, rng))
        path = os.path.realpath(os.path.join(self.directory, rel))
        if not path.startswith(os.path.realpath(self.directory) + os.sep) \
                or not os.path.isfile(path):
            h.send_error(404)
            return
        with open(path, 'rb') as f:
            data = f.read()
        start = 0
        if rng and rng.startswith('bytes=') and rng.endswith('-'):
            start = int(rng[6:-1])
            if start >= len(data):
                h.send_response(416)
                h.send_header('Content-Range', 'bytes */%d' % len(data))
                h.send_header('Content-Length', '0')
                h.end_headers()
                return
            h.send_response(206)
            h.send_header('Content-Range', 'bytes %d-%d/%d'
                          % (start, len(data) - 1, len(data)))
        else:
            h.send_response(200)
        body = data[start:]
        if rel in self.oversize:
            self._send_oversize(h, rel, body)
            return
        h.send_header('Content-Length', str(len(body)))
        h.end_headers()
        if rel in self.cut_once or rel in self.cut_always:
            self.cut_once.discard(rel)
            # Announce everything, send half, hang up.
            h.wfile.write(body[:max(1, len(body) // 2)])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    def _send_oversize(self, h, rel, body):
        """The file, then ``extra`` junk bytes, until the client hangs up."""
        extra, announce = self.oversize[rel]
        if announce:
            h.send_header('Content-Length', str(len(body) + extra))
        else:
            h.send_header('Connection', 'close')
        h.end_headers()
        h.close_connection = True
        self.sent[rel] = 0
        block = b'\xa5' * (64 * 1024)
        chunks = [body] + [block] * (extra // len(block))
        try:
            for chunk in chunks:
                h.wfile.write(chunk)
                self.sent[rel] += len(chunk)
        except OSError:
            pass  # the client stopped reading: expected
