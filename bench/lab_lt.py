#!/usr/bin/python3
"""A libtorrent node for the lab's swarm: seeds what it has, downloads the rest, keeps seeding.

    /usr/bin/python3 bench/lab_lt.py TORRENT --data DIR [--port 6881] [--super-seed]

Runs under the interpreter that has libtorrent's bindings. Listens on every address of its host
(a lab namespace), announces to the torrent's trackers, and speaks TCP only, without DHT, local
discovery, UPnP or NAT-PMP, as STA's lab nodes do. Prints "LISTENING <port>", then
"COMPLETE <seconds>" once every piece is verified (at once for a seed, whose data is checked
first), "UPLOADED <payload bytes>" every second, and runs until SIGTERM.
"""

import argparse
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError:
    sys.stderr.write("lab_lt: error: libtorrent is not importable by %s\n" % sys.executable)
    sys.exit(1)

# How often the torrent's state is looked at: bounds how late COMPLETE can be printed.
POLL_SECONDS = 0.05
UPLOADED_EVERY = 1.0


def session(port):
    return lt.session({
        "listen_interfaces": "0.0.0.0:%d" % port,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_incoming_utp": False, "enable_outgoing_utp": False,  # STA speaks TCP only
        "alert_mask": 0,
    })


def main():
    parser = argparse.ArgumentParser(prog="lab_lt")
    parser.add_argument("torrent")
    parser.add_argument("--data", required=True)
    parser.add_argument("--port", type=int, default=6881)
    parser.add_argument("--super-seed", action="store_true", help="BEP 16, for a seed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    ses = session(args.port)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(args.torrent)
    params.save_path = args.data
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    if args.super_seed:
        params.flags |= lt.torrent_flags.super_seeding
    handle = ses.add_torrent(params)
    started = time.monotonic()
    print("LISTENING %d" % args.port, flush=True)
    complete, next_upload = False, started
    while True:
        st = handle.status()
        now = time.monotonic()
        if not complete and st.is_seeding:
            complete = True
            print("COMPLETE %.3f" % (now - started), flush=True)
        if now >= next_upload:
            print("UPLOADED %d" % st.all_time_upload, flush=True)
            next_upload = now + UPLOADED_EVERY
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main()
