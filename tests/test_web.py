"""The web server: what it refuses (other addresses without a password, wrong passwords,
posts without the session id, foreign Host names, paths outside its assets, oversized bodies),
the `web` command, and the page in a real browser (headless Chromium) following a download
without a reload."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import subprocess
import unittest
from typing import Any, Dict, List
from unittest import mock

from sta.web import MAX_BODY_BYTES, SESSION_HEADER, WebError, WebServer, check_exposure, \
    is_loopback
from sta.webnode import WebNode
from tests.enginekit import LogCapture, StaProcess, poll_until, run_sta, temp_dir
from tests.shellkit import PipeShell
from tests.webkit import WAIT, WebFixture, start_seed

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)
# Virtual time the page runs in the browser: many one-second polls, while fetches still take
# real time (virtual time waits for them).
VIRTUAL_TIME_MS = 20000


class ExposureTest(unittest.TestCase):
    def test_loopback_needs_no_password_other_addresses_do(self) -> None:
        for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"):
            self.assertTrue(is_loopback(host), host)
            check_exposure(host, None)
        for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
            self.assertFalse(is_loopback(host), host)
            with self.assertRaisesRegex(WebError, "give --web-password PASS"):
                check_exposure(host, None)
        check_exposure("0.0.0.0", "pass")

    def test_web_command_refuses_an_open_address_with_one_line(self) -> None:
        done = run_sta("web", "--web-host", "0.0.0.0", "--port", "0")
        self.assertEqual(done.returncode, 1)
        lines = done.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"^sta: error: the web interface on 0\.0\.0\.0 .* "
                                   r"--web-password PASS")

    def test_shell_web_refuses_an_open_address_too(self) -> None:
        done = run_sta("shell", "--web", "0.0.0.0:0", "--port", "0")
        self.assertEqual(done.returncode, 1)
        self.assertIn("--web-password", done.stderr.decode())


class GuardTest(unittest.TestCase):
    def setUp(self) -> None:
        self.web = WebFixture(self)

    def test_page_and_assets_are_served_from_the_package(self) -> None:
        status, headers, body = self.web.request("GET", "/")
        self.assertEqual((status, headers["Content-Type"]), (200, "text/html; charset=utf-8"))
        self.assertIn(b'<script src="app.js">', body)
        self.assertIn("default-src 'self'", headers["Content-Security-Policy"])
        self.assertEqual(headers["X-Frame-Options"], "DENY")
        for path in ("/app.js", "/style.css"):
            self.assertEqual(self.web.request("GET", path)[0], 200, path)

    def test_traversal_and_unknown_paths_are_not_found(self) -> None:
        for path in ("/../web.py", "/%2e%2e/web.py", "/webui/../web.py", "/..%2fweb.py",
                     "/app.js/../../web.py", "//etc/passwd", "/index.html%00.js",
                     "/static/app.js", "/web.py", "/__init__.py"):
            status, _, body = self.web.request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertNotIn(b"import", body, path)

    def test_post_without_the_session_id_changes_nothing(self) -> None:
        status, headers, _ = self.web.request("POST", "/api/add", b'{"magnet": "x"}',
                                              {"Content-Type": "application/json"})
        self.assertEqual(status, 409)
        self.assertTrue(headers[SESSION_HEADER])
        status, _, _ = self.web.request("POST", "/transmission/rpc", b"{}",
                                        {SESSION_HEADER: "forged"})
        self.assertEqual(status, 409)
        self.assertEqual(self.web.node.status_rows(), [])

    def test_foreign_host_names_are_refused_without_a_password(self) -> None:
        for host in ("evil.example", "evil.example:9091", ""):
            status, _, _ = self.web.request("GET", "/api/torrents", headers={"Host": host})
            self.assertEqual(status, 403, host)
        for host in ("localhost:9091", "127.0.0.1", "[::1]:80"):
            status, _, _ = self.web.request("GET", "/api/torrents", headers={"Host": host})
            self.assertEqual(status, 200, host)

    def test_oversized_or_unsized_bodies_are_refused(self) -> None:
        status, answer = self.web.post_json("/api/torrents", {})  # learns the session id
        headers = {SESSION_HEADER: self.web.session_id,
                   "Content-Length": str(MAX_BODY_BYTES + 1)}
        status, _, _ = self.web.request("POST", "/api/add", None, headers)
        self.assertEqual(status, 413)
        status, _, _ = self.web.request("POST", "/api/add", b"{}",
                                        {SESSION_HEADER: self.web.session_id,
                                         "Transfer-Encoding": "chunked"})
        self.assertIn(status, (400, 411))
        status, _, body = self.web.request("POST", "/api/add", b"{not json",
                                           {SESSION_HEADER: self.web.session_id})
        self.assertEqual(status, 400)


class PasswordTest(unittest.TestCase):
    def setUp(self) -> None:
        self.web = WebFixture(self, password="s3cret")

    def test_every_path_needs_the_password(self) -> None:
        for path in ("/", "/api/torrents", "/transmission/rpc", "/nothing"):
            status, headers, _ = self.web.request("GET", path, auth="")
            self.assertEqual(status, 401, path)
            self.assertIn("Basic", headers["WWW-Authenticate"])
            self.assertEqual(self.web.request("GET", path, auth="wrong")[0], 401, path)
        self.assertEqual(self.web.request("GET", "/", headers={"Authorization": "Basic !!"})[0],
                         401)
        self.assertEqual(self.web.request("GET", "/")[0], 200)

    def test_any_host_name_is_served_with_the_password(self) -> None:
        status, _, _ = self.web.request("GET", "/api/torrents", headers={"Host": "nas.lan"})
        self.assertEqual(status, 200)

    def test_open_address_is_accepted_with_a_password(self) -> None:
        server = WebServer(self.web.web, "0.0.0.0", 0, "pw")  # built, not started
        self.assertEqual(server.host, "0.0.0.0")
        with self.assertRaises(WebError):
            WebServer(self.web.web, "0.0.0.0", 0, None)


def rpc_call(port: int, request: Dict[str, Any]) -> Dict[str, Any]:
    """One RPC request with the session-id exchange, as transmission-remote makes it."""
    session = ""
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        try:
            conn.request("POST", "/transmission/rpc/", json.dumps(request),
                         {SESSION_HEADER: session})
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        if answer.status != 409:
            return json.loads(data.decode())
        session = answer.getheader(SESSION_HEADER) or ""
    raise AssertionError("the server answered 409 twice")


class WebCommandTest(unittest.TestCase):
    def start(self, home: str) -> Any:
        with mock.patch.dict(os.environ, {"STA_HOME": home}):
            return StaProcess(self, "web", "--web-port", "0", "--port", "0", "-o",
                              os.path.join(home, "downloads"))

    def test_web_command_keeps_its_torrents_across_a_restart(self) -> None:
        home = temp_dir(self, "sta-webcmd-")
        first = self.start(home)
        port = int(first.wait_for(r"Web interface on http://127\.0\.0\.1:(\d+)/").group(1))
        link = f"magnet:?xt=urn:btih:{'cd' * 20}&dn=kept"
        answer = rpc_call(port, {"method": "torrent-add", "arguments": {"filename": link}})
        self.assertEqual(answer["arguments"]["torrent-added"]["name"], "kept")
        self.assertEqual(first.stop(), 0)
        second = self.start(home)
        port = int(second.wait_for(r"Web interface on http://127\.0\.0\.1:(\d+)/").group(1))
        second.wait_for(r"Re-adding 1 torrent from the last run")
        answer = rpc_call(port, {"method": "torrent-get", "arguments": {"fields": ["name"]}})
        self.assertEqual(answer["arguments"]["torrents"], [{"name": "kept"}])


class ShellWebTest(unittest.TestCase):
    def test_shell_web_serves_the_shells_own_torrents(self) -> None:
        home = temp_dir(self, "sta-shellweb-")
        shell = PipeShell(self, home, "--web", "127.0.0.1:0", home=home)
        port = int(shell.err.expect(r"Web interface on http://127\.0\.0\.1:(\d+)/").group(1))
        shell.send(f"download magnet:?xt=urn:btih:{'ef' * 20}&dn=typed")
        shell.out.expect("typed: downloading into")
        answer = rpc_call(port, {"method": "torrent-get", "arguments": {"fields": ["name"]}})
        self.assertEqual(answer["arguments"]["torrents"], [{"name": "typed"}])
        self.assertEqual(shell.exit(), 0)


class _StagedWebNode(WebNode):
    """The page's first look finds the download with no peer; the seed is given to it then, and
    the page's second look waits until the download is complete. The page must show both
    without being reloaded. (Only the page's polls call rows(): the sampler is not started.)"""

    seed: Any = None
    looks: List[float]

    def rows(self) -> List[Dict[str, Any]]:
        rows = super().rows()
        self.looks.append(rows[0]["progress"])
        if len(self.looks) == 1:
            self.seed()
        elif len(self.looks) == 2:
            rows = poll_until(lambda: [r for r in [super(_StagedWebNode, self).rows()]
                                       if r[0]["progress"] == 1.0], WAIT,
                              "the download complete")[0]
        return rows


@unittest.skipIf(CHROMIUM is None, "Chromium is not installed (apt-get install chromium)")
class BrowserTest(unittest.TestCase):
    def test_page_shows_a_download_progress_without_a_reload(self) -> None:
        web = WebFixture(self, web_class=_StagedWebNode)
        web.web.looks = []
        seed_port = start_seed(self, web)
        web.node.add(web.meta, web.downloads, seed_only=False, peers=(), recheck=False,
                     timeout=None)
        web.wait_state("downloading")

        def seed() -> None:
            web.node.add(web.meta, web.downloads, seed_only=False,
                         peers=[("127.0.0.1", seed_port)], recheck=False, timeout=None)
        web.web.seed = seed
        requests = LogCapture(self)
        requests.setLevel(logging.DEBUG)  # the server logs each request at DEBUG
        logging.getLogger("sta.web").setLevel(logging.DEBUG)
        self.addCleanup(logging.getLogger("sta.web").setLevel, logging.NOTSET)
        dom = self.dump_dom(f"http://{web.address}/")

        self.assertEqual(web.web.looks[0], 0.0)
        self.assertGreaterEqual(len(web.web.looks), 3)
        row = re.search(r'<div class="row torrent" data-hash="%s"[^>]*>' %
                        web.meta.info_hash.hex(), dom)
        self.assertIsNotNone(row, dom[-3000:])
        self.assertIn('data-state="seeding"', row.group(0))
        self.assertIn('data-progress="1.0000"', row.group(0))
        self.assertIn('<span class="pct">100.0%</span>', dom)
        self.assertRegex(dom, r'<span class="fill" style="width: 100(\.0)?%;">')
        pages = [m for m in requests.matching('"GET / HTTP')]
        self.assertEqual(len(pages), 1, pages)

    def dump_dom(self, url: str) -> str:
        profile = temp_dir(self, "sta-chromium-")
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}",
             f"--virtual-time-budget={VIRTUAL_TIME_MS}", "--dump-dom", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            timeout=WAIT * 3)
        self.assertEqual(done.returncode, 0, done.stderr.decode()[-2000:])
        return done.stdout.decode("utf-8", "replace")


if __name__ == "__main__":
    unittest.main()
