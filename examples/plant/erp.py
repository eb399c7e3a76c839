"""A stand-in ERP for the example plant: accepts POST /erp/levels on 127.0.0.1:9000 and
prints what it receives (with the Idempotency-Key switchyard sends on every attempt)."""
from http.server import BaseHTTPRequestHandler, HTTPServer


class ERP(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        print(self.path, self.headers.get("Idempotency-Key"), body.decode(), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", 9000), ERP).serve_forever()
