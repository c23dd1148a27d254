"""STA's tests. A test run keeps what nodes store outside their folders (the TLS key, the resume
key and seeds' resume states, the shell's list of torrents, the DHT's nodes) in a temporary
STA_HOME of its own, never in the user's ~/.sta; processes the tests start inherit it. Nodes
join the DHT through nobody (an empty STA_DHT_BOOTSTRAP) unless a test gives them a node on
127.0.0.1: no test ever reaches the public DHT routers. Nor do they look for peers by multicast
on the machine's networks (STA_NO_LSD); the tests of local peer discovery turn it on where they
made the network themselves."""

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="sta-test-home-")
os.environ["STA_HOME"] = _home
os.environ["STA_DHT_BOOTSTRAP"] = ""
atexit.register(shutil.rmtree, _home, True)
os.environ["STA_NO_LSD"] = "1"
