# STA: every target runs with nothing but Python. PYTHON picks the interpreter:
#   make test PYTHON=~/.pyenv/versions/3.8.18/bin/python
PYTHON ?= python3

# Test modules that open no socket and start no process: fast, run on every Python in CI.
PURE_TESTS = tests.test_bencode tests.test_metainfo tests.test_magnet tests.test_wire \
             tests.test_bitfield tests.test_picker tests.test_storage tests.test_fuzz \
             tests.test_superseed tests.test_availability tests.test_blockcache \
             tests.test_choker tests.test_console tests.test_der tests.test_extension \
             tests.test_maketorrent tests.test_memstorage tests.test_metadata \
             tests.test_nodestate tests.test_peerlink tests.test_piecemap tests.test_safepath \
             tests.test_trackerproto tests.test_trackers tests.test_ui tests.test_ut_metadata \
             tests.test_peerproto tests.test_smartban tests.test_swarm tests.test_errors \
             tests.test_cliargs tests.test_nopeers tests.test_torrent_commands tests.test_views \
             tests.test_tracker_limits tests.test_tracker_swarm tests.test_tracker_pages \
             tests.test_pex tests.test_peerexchange tests.test_statusrows \
             tests.test_udptrackerproto tests.test_lsd tests.test_fdlimit tests.test_utpproto \
             tests.test_utpcodec tests.test_ledbat

.PHONY: test test-pure bench lab lab-bench clean

test:
	$(PYTHON) -m unittest discover -s tests -t . -p 'test_*.py'

test-pure:
	$(PYTHON) -m unittest $(PURE_TESTS)

bench:
	$(PYTHON) bench/run_all.py

# The seed report's demonstration in a lab of network namespaces on this machine (needs root).
lab:
	$(PYTHON) bench/lab.py demo

# Bandwidth and swarm figures in the lab, beside libtorrent (needs root; about 5 minutes).
# Not part of `make bench`; `bench/run_all.py --lab` runs everything.
lab-bench:
	$(PYTHON) bench/run_all.py lab-bandwidth lab-swarm

clean:
	rm -rf __pycache__ */__pycache__ */*/__pycache__
