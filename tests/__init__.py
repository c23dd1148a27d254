"""STA's tests. A test run keeps what nodes store outside their folders (the TLS key, the resume
key and seeds' resume states, the shell's list of torrents) in a temporary STA_HOME of its own,
never in the user's ~/.sta; processes the tests start inherit it. Nor do the nodes the tests
start look for peers by multicast on the machine's networks (STA_NO_LSD); the tests of local
peer discovery turn it on where they made the network themselves."""

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="sta-test-home-")
os.environ["STA_HOME"] = _home
atexit.register(shutil.rmtree, _home, True)
os.environ["STA_NO_LSD"] = "1"
