"""Helpers for the web tests: a node with the web server in front of it, on 127.0.0.1 and port 0,
its saved list in a temporary STA_HOME, and a stdlib HTTP client that speaks the session-id
exchange. Everything started here is stopped by the test's cleanup."""

from __future__ import annotations

import base64
import http.client
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from sta.node import Node
from sta.web import RPC_PATH, SESSION_HEADER, WebServer
from sta.webnode import NoticeLog, WebNode
from tests.enginekit import make_tree, poll_until, temp_dir, write_torrent

# A data check or a local transfer of a few hundred KiB takes milliseconds; the bound is for a
# loaded machine.
WAIT = 30.0
# A socket read that takes longer than this means the server hangs.
CLIENT_TIMEOUT = 30.0
# The test torrent: several pieces of 16 KiB, so a piece map and file progress mean something.
DATA_SIZE = 300000
PIECE_LENGTH = 16384

Reply = Tuple[int, Dict[str, str], bytes]


class WebFixture:
    """A node (no torrents yet) behind a WebServer, and a .torrent with its data on disk."""

    def __init__(self, test: Any, password: Optional[str] = None,
                 web_class: type = WebNode) -> None:
        self.dir = temp_dir(test, "sta-web-")
        self.home = os.path.join(self.dir, "home")
        self.downloads = os.path.join(self.dir, "downloads")
        self.data = make_tree(os.path.join(self.dir, "data"), {"notes.bin": DATA_SIZE})
        self.torrent_path = os.path.join(self.dir, "notes.torrent")
        self.meta = write_torrent(os.path.join(self.data, "notes.bin"), self.torrent_path,
                                  piece_length=PIECE_LENGTH)
        self.notices = NoticeLog()
        self.node = Node(self.notices, port=0, host="127.0.0.1", state_dir=self.home)
        self.node.start()
        test.addCleanup(self.node.stop)
        self.node.restore()
        self.web = web_class(self.node, self.downloads, self.notices)
        self.server = WebServer(self.web, "127.0.0.1", 0, password)
        self.server.start()
        test.addCleanup(self.server.stop)
        self.password = password
        self.session_id = ""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def torrent_bytes(self) -> bytes:
        with open(self.torrent_path, "rb") as f:
            return f.read()

    def seed(self) -> None:
        """Seed the test torrent from its data folder and wait until it is seeding."""
        self.node.add(self.meta, self.data, seed_only=True, peers=(), recheck=False,
                      timeout=None)
        self.wait_state("seeding")

    def wait_state(self, state: str) -> List[Dict[str, Any]]:
        return poll_until(lambda: [r for r in [self.node.status_rows()]
                                   if r and all(s["state"] == state for s in r)],
                          WAIT, f"every torrent {state}")[0]

    # -- HTTP --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None, auth: Optional[str] = None) -> Reply:
        """One request on a fresh connection: (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port,
                                          timeout=CLIENT_TIMEOUT)
        try:
            sent = dict(headers or {})
            password = auth if auth is not None else self.password
            if password:
                token = base64.b64encode(f"user:{password}".encode()).decode()
                sent.setdefault("Authorization", "Basic " + token)
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def post_json(self, path: str, value: Any) -> Tuple[int, Any]:
        """POST JSON with the session id, learning it from a 409 first (as clients do)."""
        body = json.dumps(value).encode()
        for _ in range(2):
            status, headers, data = self.request(
                "POST", path, body, {SESSION_HEADER: self.session_id,
                                     "Content-Type": "application/json"})
            if status != 409:
                return status, json.loads(data.decode())
            self.session_id = headers[SESSION_HEADER]
        raise AssertionError("the server answered 409 twice")

    def get_json(self, path: str) -> Tuple[int, Any]:
        status, _, data = self.request("GET", path)
        return status, json.loads(data.decode())

    def rpc(self, method: str, arguments: Optional[Dict[str, Any]] = None,
            tag: Optional[int] = None) -> Dict[str, Any]:
        request: Dict[str, Any] = {"method": method, "arguments": arguments or {}}
        if tag is not None:
            request["tag"] = tag
        status, answer = self.post_json(RPC_PATH, request)
        if status != 200:
            raise AssertionError(f"RPC {method}: HTTP {status}")
        return answer


def start_seed(test: Any, fixture: WebFixture) -> int:
    """A second node seeding the fixture's torrent from its data; returns its peer port."""
    node = Node(NoticeLog(), port=0, host="127.0.0.1",
                state_dir=os.path.join(fixture.dir, "seed-home"))
    node.start()
    test.addCleanup(node.stop)
    node.restore()
    node.add(fixture.meta, fixture.data, seed_only=True, peers=(), recheck=False, timeout=None)
    poll_until(lambda: [r for r in node.status_rows() if r["state"] == "seeding"], WAIT,
               "the seed seeding")
    return node.listen_port


def download_from_seed(test: Any, fixture: WebFixture) -> None:
    """Give the fixture's torrent, already added to its node, a seed, and wait until it is
    complete."""
    seed_port = start_seed(test, fixture)
    fixture.node.add(fixture.meta, fixture.downloads, seed_only=False,
                     peers=[("127.0.0.1", seed_port)], recheck=False, timeout=None)
    fixture.wait_state("seeding")
