"""caas fixture: a standard-library HTTP server that uses one small PyPI dependency (six)."""
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import six

PORT = int(os.environ.get("PORT", "5000"))
INSTANCE = os.environ.get("CAAS_INSTANCE", "unknown")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = six.ensure_binary(
            "python app works: %s (six %s, python %s)\n"
            % (INSTANCE, six.__version__, sys.version.split()[0])
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args))


def main():
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("python fixture listening on %d as %s" % (PORT, INSTANCE))
    server.serve_forever()


if __name__ == "__main__":
    main()
