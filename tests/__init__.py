"""STA's tests. A test run keeps what nodes store outside their folders (the TLS key, the resume
key and seeds' resume states, the shell's list of torrents) in a temporary STA_HOME of its own,
never in the user's ~/.sta; processes the tests start inherit it."""

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="sta-test-home-")
os.environ["STA_HOME"] = _home
atexit.register(shutil.rmtree, _home, True)
