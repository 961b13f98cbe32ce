"""caas fixture for Dockerfile builds: answers on $PORT with $GREETING and the instance."""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT = int(os.environ.get("PORT", "5000"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s: %s\n" % (os.environ.get("GREETING", "hello"),
                              os.environ.get("CAAS_INSTANCE", "unknown"))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print("dockerfile fixture listening on %d" % PORT, flush=True)
HTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
