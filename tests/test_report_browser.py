"""``pchw report``'s page in a real headless browser (Chromium from the distribution, which
``make system-deps`` installs): the page renders, every figure decodes, and the page fetches
nothing but itself (served under a Content-Security-Policy that reports any other request)."""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from pchw.cli import main
from pchw.report import SECTIONS

pytest.importorskip("matplotlib",
                    reason="pchw report draws with matplotlib (pip install 'pchw[report]')")

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: Nothing but inline styles and scripts and data: images; any other fetch is blocked and
#: reported to the page (a securitypolicyviolation event).
POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
          "script-src 'unsafe-inline'")
#: Appended to the page as served to the browser (the file on disk is left as written): once
#: the page has loaded, it records what rendered, and every request the policy below blocked,
#: in an attribute that --dump-dom prints.
PROBE = """<script>const violations = [];
document.addEventListener("securitypolicyviolation", e => violations.push(e.blockedURI));
window.addEventListener("load", () => {
  const images = [...document.images];
  document.documentElement.setAttribute("data-probe", JSON.stringify({
    images: images.length,
    decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    sections: [...document.querySelectorAll("section")].map(s => s.id),
    height: document.body.scrollHeight, title: document.title, violations}));
});</script>"""


def _browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    reason = (f"no headless browser ({', '.join(BROWSERS)}); `make system-deps` installs "
              "Debian's chromium")
    if os.environ.get("CI"):
        pytest.fail(reason + " (a missing tool is a failure when CI is set)")
    pytest.skip(reason)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the report folder, the page with :data:`PROBE`, and records every request."""

    def __init__(self, *args, requests, **kwargs):
        self.requests = requests
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.requests.append(self.path)
        if self.path == "/index.html":
            page = Path(self.translate_path(self.path)).read_text(encoding="utf-8")
            body = page.replace("</body>", PROBE + "</body>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Security-Policy", POLICY)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


def test_report_renders_in_a_real_browser(tmp_path, monkeypatch):
    browser = _browser()
    monkeypatch.chdir(tmp_path)
    model, out = tmp_path / "xor", tmp_path / "report"
    assert main(["init", str(model), "--layers", "2,4,2", "--activations", "identity,hardtanh",
                 "--dataset", "xor", "--seed", "1"]) == 0
    assert main(["report", str(model), "-o", str(out), "--epochs", "2"]) == 0
    page = (out / "index.html").read_text()
    figures = page.count("<img ")
    assert figures >= 2

    requests = []
    handler = functools.partial(_Handler, directory=str(out), requests=requests)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=10000", "--dump-dom",
             f"{origin}/index.html"],
            capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'data-probe="([^"]*)"', result.stdout)
    assert match, f"the page's load handler did not run:\n{result.stdout[:2000]}"
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["images"] == figures and probe["decoded"] == figures, probe
    assert probe["sections"] == list(SECTIONS)
    assert probe["height"] > 1000 and probe["title"]

    # Nothing outside the page: no request was blocked by the policy, and the server saw only
    # the page (the figures are inline data: URLs).
    assert probe["violations"] == [], probe["violations"]
    assert [r for r in requests if r != "/favicon.ico"] == ["/index.html"], requests
