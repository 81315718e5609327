"""A stand-in for ``label-studio start`` (used by test_serve.py, not collected by pytest).

    python tests/labelstudio/standin_ls.py cli ARGV...       `kvasir-ml ARGV` with this stand-in as the server
    python tests/labelstudio/standin_ls.py server ... -p PORT  the stand-in itself

The server answers ``/health`` on 127.0.0.1:PORT and keeps a child process that names the data
dir on its command line, so a test sees whether a signal ends the whole process group. It gets
the real command's arguments (``LabelStudioServer._command`` minus the executable): what the
test checks about command lines is checked on the real arguments. It starts in well under a
second where Label Studio takes ~20-40 s on 2 busy cores.
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "UP"}')

    def log_message(self, *args):
        pass


def server(argv: list[str]) -> None:
    data_dir, port = argv[argv.index("--data-dir") + 1], int(argv[argv.index("-p") + 1])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", data_dir])  # same group
    try:
        HTTPServer(("127.0.0.1", port), _Health).serve_forever()
    finally:
        child.kill()


def cli(argv: list[str]) -> int:
    from kvasir_ml.cli import main
    from kvasir_ml.labelstudio.server import LabelStudioServer

    real = LabelStudioServer._command

    def standin(self) -> list[str]:
        return [sys.executable, __file__, "server", *real(self)[1:]]

    LabelStudioServer._command = standin
    return main(argv)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2:])
    else:
        sys.exit(cli(sys.argv[2:]))
