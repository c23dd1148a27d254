#!/usr/bin/python3
"""Drive libtorrent from the interop tests and the benchmark.

libtorrent's Python bindings live only under the system interpreter, so the tests (which may run
on any Python) start this script with /usr/bin/python3 and talk to it through its output:

    info TORRENT
        JSON: info_hash (v1, hex), name, num_pieces, piece_length, total_size, files
        [{path, size}] (padding files left out; all_files lists them too, with offsets),
        piece_hashes (hex), trackers, private, comment, creator, web_seeds
    parse-magnet URI
        JSON: info_hash, name, trackers, peers ["host:port", ...], web_seeds
    make-magnet TORRENT
        the magnet URI libtorrent makes for the torrent
    create PATH --out T [--tracker URL]... [--piece-length N] [--private] [--comment C]
        a v1-only torrent hashed by libtorrent (one tier per tracker)
    seed TORRENT... --data DIR [--port P] [--peer H:P]... [--tracker-ok] [--tracker URL]...
         [--seconds S] [--encryption enabled|forced|disabled] [--utp-only]
        checks each torrent's content under DIR (one session, all torrents), then prints
        "LISTENING <port>" and "SEEDING" once and seeds until killed or for S seconds;
        announces to the torrents' trackers only with --tracker-ok
    download (TORRENT... | --magnet URI) --out DIR [--port P] [--peer H:P]... [--tracker URL]...
         [--timeout S] [--encryption enabled|forced|disabled] [--utp-only]
        prints "LISTENING <port>", "PROGRESS <fraction> <bytes/s>" about twice a second (over
        all the torrents: bytes done / bytes wanted, summed rates) and "DONE <seconds>" once
        every piece of every torrent is verified and flushed, then exits 0; after S seconds
        exits 1 with the reason on stderr
    dht --bootstrap H:P [--port P] [--announce HEX]... [--get-peers HEX]... [--seconds S]
        a DHT node on 127.0.0.1 that joins through H:P only; prints "LISTENING <port>",
        "NODES <n>" when its routing table changes, "ANNOUNCED <hex> <host> <port>" for each
        announce_peer it receives, and "PEERS <hex> <host:port>..." for each get_peers answer
        with peers. Every REPEAT_INTERVAL seconds, until killed or for S seconds, it announces
        itself (its listen port) for each --announce info hash, through a magnet-only torrent
        (the bindings' session.dht_announce cannot be called: its flags type is not exported),
        and looks up each --get-peers info hash

Every session listens on 127.0.0.1 only and (but in the dht mode) has DHT, local peer discovery, UPnP, NAT-PMP and uTP
off, so a test never leaves the loopback interface and speaks TCP; with --utp-only (seed and
download) it speaks uTP only: TCP off both ways, uTP on both ways. Errors go to stderr as one
line and exit with status 1.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

try:
    import libtorrent as lt
except ImportError:  # pragma: no cover - reported to the caller, which skips the test
    sys.stderr.write("lt_helper: error: libtorrent is not importable by %s\n" % sys.executable)
    sys.exit(1)

# How often a download prints a PROGRESS line: often enough for a test to see movement, rarely
# enough that a pipe nobody reads for a while does not fill up (a line is ~30 bytes).
PROGRESS_INTERVAL = 0.5
# How long each loop waits for libtorrent alerts; bounds the latency of DONE and of the deadline.
ALERT_WAIT_MS = 100
# Deadline for binding the listen socket and for checking existing data before seeding. Checking
# 1 GiB runs at disk/SHA-1 speed (well under 10 s here); the rest is slack for slow CI machines.
LISTEN_TIMEOUT = 10.0
CHECK_TIMEOUT = 300.0
# A downloader with a --peer reconnects this often while it has no peer: the seed may not have
# finished starting, and libtorrent's own retry waits min_reconnect_time.
RECONNECT_INTERVAL = 2.0
# Deadline for flushing written pieces before reporting DONE.
FLUSH_TIMEOUT = 10.0
DEFAULT_DOWNLOAD_TIMEOUT = 120.0
# The dht mode repeats its announces and lookups this often: a lookup over a handful of
# loopback nodes takes milliseconds, and libtorrent's own interval (15 minutes) is far too long
# for a test.
REPEAT_INTERVAL = 1.0
# libtorrent's settings for a private DHT on loopback, where every node shares 127.0.0.1:
# by default it keeps one node per IP in its routing table and lookups
# (dht_restrict_routing_ips, dht_restrict_search_ips) and stops answering an IP that sends more
# than dht_block_ratelimit (5) messages a second (its dos_blocker).
LOOPBACK_DHT_SETTINGS = {
    "enable_dht": True,
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    "dht_ignore_dark_internet": False,
    "dht_enforce_node_id": False,
    "dht_block_ratelimit": 10000,
}


def fail(message):
    sys.stderr.write("lt_helper: error: %s\n" % message)
    sys.stderr.flush()
    sys.exit(1)


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def parse_peer(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        fail("bad peer %r: expected HOST:PORT" % text)
    return host.strip("[]"), int(port)


def load_torrent(path):
    try:
        return lt.torrent_info(path)
    except RuntimeError as exc:
        fail("cannot load %s: %s" % (path, exc))


def v1_hex(info_hashes):
    return str(info_hashes.v1)


# ---------------------------------------------------------------------------------------- session

def parse_setting(text):
    """NAME=VALUE for libtorrent's settings_pack, typed like the setting's default."""
    name, sep, value = text.partition("=")
    defaults = lt.default_settings()
    if not sep or name not in defaults:
        fail("bad --setting %r: expected NAME=VALUE with a libtorrent setting name" % text)
    current = defaults[name]
    if isinstance(current, bool):
        return name, value.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        try:
            return name, int(value)
        except ValueError:
            fail("bad --setting %r: %s takes an integer" % (text, name))
    return name, value


# --encryption: libtorrent's MSE/PE policy. "enabled" (the default here) offers and accepts both
# plain and encrypted connections and picks plaintext inside MSE/PE; "forced" takes MSE/PE with
# the RC4 stream only, both ways (qBittorrent's "require encryption"); "disabled" plain only.
ENCRYPTION_MODES = ("enabled", "forced", "disabled")


def encryption_settings(mode):
    if mode == "forced":
        policy, level, prefer_rc4 = lt.enc_policy.pe_forced, lt.enc_level.rc4, True
    elif mode == "disabled":
        policy, level, prefer_rc4 = lt.enc_policy.pe_disabled, lt.enc_level.both, False
    else:
        policy, level, prefer_rc4 = lt.enc_policy.pe_enabled, lt.enc_level.both, False
    return {"out_enc_policy": int(policy), "in_enc_policy": int(policy),
            "allowed_enc_level": int(level), "prefer_rc4": prefer_rc4}


# --utp-only: libtorrent neither accepts (it closes incoming TCP connections) nor dials TCP.
UTP_ONLY_SETTINGS = {
    "enable_incoming_utp": True,
    "enable_outgoing_utp": True,
    "enable_incoming_tcp": False,
    "enable_outgoing_tcp": False,
}


def make_session(port, overrides=(), encryption="enabled", utp_only=False):
    alerts = (lt.alert.category_t.error_notification
              | lt.alert.category_t.status_notification
              | lt.alert.category_t.storage_notification)
    settings = {
        "listen_interfaces": "127.0.0.1:%d" % port,
        "outgoing_interfaces": "",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # TCP unless --utp-only: libtorrent would otherwise try uTP first on outgoing connections.
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        # Every peer of a loopback test has the same address.
        "allow_multiple_connections_per_ip": True,
        # Trackers in the tests run on 127.0.0.1 and take query strings: libtorrent 2.0's SSRF
        # mitigation would refuse to announce to them.
        "ssrf_mitigation": False,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "min_reconnect_time": 1,
        "stop_tracker_timeout": 1,
        "alert_mask": int(alerts),
        "user_agent": "lt_helper/libtorrent-" + lt.__version__,
    }
    settings.update(encryption_settings(encryption))
    if utp_only:
        settings.update(UTP_ONLY_SETTINGS)
    settings.update(parse_setting(text) for text in overrides)
    return lt.session(settings)


def wait_listening(ses):
    """Wait for the listen socket and return its port."""
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        ses.wait_for_alert(ALERT_WAIT_MS)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.listen_failed_alert):
                fail("cannot listen: %s" % alert.message())
            if isinstance(alert, lt.listen_succeeded_alert):
                return ses.listen_port()
    port = ses.listen_port()
    if port:
        return port
    fail("not listening after %.0f s" % LISTEN_TIMEOUT)


def add_params(save_path, torrent=None, magnet=None):
    if magnet is not None:
        try:
            params = lt.parse_magnet_uri(magnet)
        except RuntimeError as exc:
            fail("bad magnet URI: %s" % exc)
    else:
        params = lt.add_torrent_params()
        params.ti = load_torrent(torrent)
    params.save_path = save_path
    # Not auto-managed: libtorrent's queue must not pause a torrent the test is waiting for.
    flags = params.flags
    flags &= ~lt.torrent_flags.auto_managed
    flags &= ~lt.torrent_flags.paused
    flags &= ~lt.torrent_flags.seed_mode
    params.flags = flags
    return params


def add_trackers(params, urls):
    """Announce to these trackers as well (each its own tier)."""
    trackers = list(params.trackers)
    # libtorrent puts trackers without a tier entry in tier 0.
    tiers = (list(params.tracker_tiers) + [0] * len(trackers))[:len(trackers)]
    first = max(tiers) + 1 if tiers else 0
    params.trackers = trackers + list(urls)
    params.tracker_tiers = tiers + [first + i for i in range(len(urls))]


def check_errors(ses):
    for alert in ses.pop_alerts():
        if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
            fail(alert.message())
        if isinstance(alert, lt.listen_failed_alert):
            fail("cannot listen: %s" % alert.message())


def flush(ses, handles):
    """Make libtorrent hand every written block to the operating system before DONE."""
    for handle in handles:
        handle.flush_cache()
    # One alert per torrent; a torrent may post more than one (libtorrent flushes a torrent
    # that finishes on its own too), so count torrents, not alerts.
    waiting = set(handles)
    deadline = time.monotonic() + FLUSH_TIMEOUT
    while waiting and time.monotonic() < deadline:
        ses.wait_for_alert(ALERT_WAIT_MS)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.cache_flushed_alert):
                waiting.discard(alert.handle)


def overall_progress(statuses):
    """(fraction done, payload bytes/s) over all the torrents of a download.

    One torrent reports libtorrent's own progress; several weigh each by the bytes it wants
    (a torrent without metadata yet wants 0, so counts once it has it).
    """
    rate = sum(st.download_payload_rate for st in statuses)
    if len(statuses) == 1:
        return statuses[0].progress, rate
    wanted = sum(st.total_wanted for st in statuses)
    done = sum(st.total_wanted_done for st in statuses)
    return (done / wanted if wanted else 0.0), rate


# --------------------------------------------------------------------------------------- commands

def cmd_info(args):
    ti = load_torrent(args.torrent)
    fs = ti.files()
    files, all_files = [], []
    for i in range(fs.num_files()):
        path = fs.file_path(i).replace(os.sep, "/")
        pad = bool(fs.file_flags(i) & lt.file_storage.flag_pad_file)
        all_files.append({"path": path, "size": fs.file_size(i), "offset": fs.file_offset(i),
                          "pad": pad})
        if not pad:
            files.append({"path": path, "size": fs.file_size(i)})
    out = {
        "info_hash": v1_hex(ti.info_hashes()),
        "name": ti.name(),
        "num_pieces": ti.num_pieces(),
        "piece_length": ti.piece_length(),
        "total_size": ti.total_size(),
        "files": files,
        "all_files": all_files,
        "piece_hashes": [bytes(ti.hash_for_piece(i)).hex() for i in range(ti.num_pieces())],
        "trackers": [t.url for t in ti.trackers()],
        "private": bool(ti.priv()),
        "comment": ti.comment(),
        "creator": ti.creator(),
        "web_seeds": [w["url"] for w in ti.web_seeds()],
    }
    print(json.dumps(out, indent=1))


def cmd_parse_magnet(args):
    try:
        params = lt.parse_magnet_uri(args.uri)
    except RuntimeError as exc:
        fail("bad magnet URI: %s" % exc)
    out = {
        "info_hash": v1_hex(params.info_hashes),
        "name": params.name,
        "trackers": list(params.trackers),
        "peers": ["%s:%d" % (host, port) for host, port in params.peers],
        "web_seeds": list(params.url_seeds),
    }
    print(json.dumps(out, indent=1))


def cmd_make_magnet(args):
    print(lt.make_magnet_uri(load_torrent(args.torrent)))


def cmd_create(args):
    path = os.path.abspath(args.path)
    if not os.path.exists(path):
        fail("%s does not exist" % args.path)
    fs = lt.file_storage()
    lt.add_files(fs, path)
    if fs.num_files() == 0:
        fail("%s holds no files" % args.path)
    ct = lt.create_torrent(fs, args.piece_length, flags=lt.create_torrent.v1_only)
    for tier, url in enumerate(args.tracker):
        ct.add_tracker(url, tier)
    if args.comment:
        ct.set_comment(args.comment)
    if args.private:
        ct.set_priv(True)
    ct.set_creator("libtorrent " + lt.__version__)
    lt.set_piece_hashes(ct, os.path.dirname(path))
    with open(args.out, "wb") as f:
        f.write(lt.bencode(ct.generate()))


def cmd_seed(args):
    ses = make_session(args.port, args.setting, args.encryption, args.utp_only)
    port = wait_listening(ses)
    handles = []
    for torrent in args.torrent:
        params = add_params(args.data, torrent=torrent)
        if not args.tracker_ok:
            params.trackers = []
            params.ti = strip_trackers(params.ti)
        add_trackers(params, args.tracker)
        handles.append(ses.add_torrent(params))
    wait_checked(ses, len(handles), args.data)
    for handle, torrent in zip(handles, args.torrent):
        st = handle.status()
        if not st.is_seeding:
            where = args.data if len(handles) == 1 else "%s for %s" % (args.data, torrent)
            fail("data in %s does not match the torrent (%.1f%% present)"
                 % (where, 100.0 * st.progress))
    # Announced only now: a peer that connects while the data is being checked gets refused and
    # libtorrent would not retry it for a while.
    emit("LISTENING %d" % port)
    emit("SEEDING")
    for peer in args.peer:
        for handle in handles:
            handle.connect_peer(parse_peer(peer))
    stop = time.monotonic() + args.seconds if args.seconds else None
    while stop is None or time.monotonic() < stop:
        ses.wait_for_alert(500)
        check_errors(ses)
    return 0


def wait_checked(ses, count, data):
    """Wait until libtorrent has checked the data of `count` torrents."""
    deadline = time.monotonic() + CHECK_TIMEOUT
    checked = 0
    while checked < count:
        if time.monotonic() > deadline:
            fail("checking %s took longer than %.0f s" % (data, CHECK_TIMEOUT))
        ses.wait_for_alert(ALERT_WAIT_MS)
        for alert in ses.pop_alerts():
            if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
                fail(alert.message())
            if isinstance(alert, lt.torrent_checked_alert):
                checked += 1


def strip_trackers(ti):
    """A copy of the torrent with no trackers, so a seed without --tracker-ok never announces.

    Built around the exact info dictionary bytes so the info hash cannot change.
    """
    return lt.torrent_info(lt.bdecode(b"d4:info" + bytes(ti.info_section()) + b"e"))


def cmd_download(args):
    if bool(args.torrent) == (args.magnet is not None):
        fail("give either a TORRENT or --magnet URI")
    os.makedirs(args.out, exist_ok=True)
    peers = [parse_peer(p) for p in args.peer]
    ses = make_session(args.port, args.setting, args.encryption, args.utp_only)
    port = wait_listening(ses)
    emit("LISTENING %d" % port)
    sources = [{"torrent": t} for t in args.torrent] or [{"magnet": args.magnet}]
    handles = []
    for source in sources:
        params = add_params(args.out, **source)
        add_trackers(params, args.tracker)
        handles.append(ses.add_torrent(params))
        for peer in peers:
            handles[-1].connect_peer(peer)
    start = time.monotonic()
    deadline = start + args.timeout
    next_progress = start
    last_connect = start
    while True:
        now = time.monotonic()
        statuses = [handle.status() for handle in handles]
        if all(st.has_metadata and st.is_seeding for st in statuses):
            break
        progress, rate = overall_progress(statuses)
        if now >= next_progress:
            emit("PROGRESS %.4f %d" % (progress, rate))
            next_progress = now + PROGRESS_INTERVAL
        if now >= deadline:
            late = [st for st in statuses if not (st.has_metadata and st.is_seeding)]
            fail("timed out after %.0f s at %.1f%% (%d peers, state %s)"
                 % (args.timeout, 100.0 * progress, sum(st.num_peers for st in statuses),
                    late[0].state))
        idle = [h for h, st in zip(handles, statuses) if st.num_peers == 0]
        if peers and idle and now - last_connect >= RECONNECT_INTERVAL:
            for handle in idle:
                for peer in peers:
                    handle.connect_peer(peer)
            last_connect = now
        ses.wait_for_alert(ALERT_WAIT_MS)
        check_errors(ses)
    elapsed = time.monotonic() - start
    flush(ses, handles)
    emit("PROGRESS 1.0000 0")
    emit("DONE %.3f" % elapsed)
    return 0


def cmd_dht(args):
    overrides = ["%s=%s" % item for item in sorted(LOOPBACK_DHT_SETTINGS.items())]
    overrides.append("dht_bootstrap_nodes=%s" % args.bootstrap)
    ses = make_session(args.port, overrides + args.setting)
    mask = (lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
            | lt.alert.category_t.dht_notification
            | lt.alert.category_t.dht_operation_notification)
    ses.apply_settings({"alert_mask": int(mask)})
    port = wait_listening(ses)
    emit("LISTENING %d" % port)
    handles = [ses.add_torrent(add_params(tempfile.gettempdir(),
                                          magnet="magnet:?xt=urn:btih:" + parse_hash(text)))
               for text in args.announce]
    lookups = [lt.sha1_hash(bytes.fromhex(parse_hash(text))) for text in args.get_peers]
    stop = time.monotonic() + args.seconds if args.seconds else None
    next_round = time.monotonic()
    nodes = -1
    while stop is None or time.monotonic() < stop:
        if time.monotonic() >= next_round:
            for handle in handles:
                handle.force_dht_announce()
            for info_hash in lookups:
                ses.dht_get_peers(info_hash)
            next_round = time.monotonic() + REPEAT_INTERVAL
            with warnings.catch_warnings():  # status() is deprecated, yet the simplest count
                warnings.simplefilter("ignore", DeprecationWarning)
                count = ses.status().dht_nodes
            if count != nodes:
                emit("NODES %d" % count)
                nodes = count
        ses.wait_for_alert(ALERT_WAIT_MS)
        for alert in ses.pop_alerts():
            report_dht_alert(alert)
    return 0


def parse_hash(text):
    if len(text) != 40 or any(c not in "0123456789abcdefABCDEF" for c in text):
        fail("bad info hash %r: expected 40 hex digits" % text)
    return text.lower()


def report_dht_alert(alert):
    if isinstance(alert, lt.listen_failed_alert):
        fail("cannot listen: %s" % alert.message())
    if isinstance(alert, lt.dht_announce_alert):
        emit("ANNOUNCED %s %s %d" % (alert.info_hash, alert.ip, alert.port))
    elif isinstance(alert, lt.dht_get_peers_reply_alert):
        peers = ["%s:%d" % (host, port) for host, port in alert.peers()]
        if peers:
            emit("PEERS %s %s" % (alert.info_hash, " ".join(peers)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lt_helper", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.required = True

    p = sub.add_parser("info", help="describe a .torrent as JSON")
    p.add_argument("torrent")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("parse-magnet", help="describe a magnet URI as JSON")
    p.add_argument("uri")
    p.set_defaults(func=cmd_parse_magnet)

    p = sub.add_parser("make-magnet", help="print the magnet URI of a .torrent")
    p.add_argument("torrent")
    p.set_defaults(func=cmd_make_magnet)

    p = sub.add_parser("create", help="make a v1 .torrent with libtorrent")
    p.add_argument("path")
    p.add_argument("--out", required=True)
    p.add_argument("--tracker", action="append", default=[], help="one tier per URL")
    p.add_argument("--piece-length", type=int, default=0, help="bytes; 0 lets libtorrent pick")
    p.add_argument("--private", action="store_true")
    p.add_argument("--comment")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("seed", help="check data and seed it")
    p.add_argument("torrent", nargs="+")
    p.add_argument("--data", required=True, help="directory holding the torrents' content")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--peer", action="append", default=[], help="HOST:PORT to connect to")
    p.add_argument("--tracker-ok", action="store_true",
                   help="announce to the torrent's trackers (off: peers come from --peer only)")
    p.add_argument("--tracker", action="append", default=[],
                   help="also announce to this URL (whatever --tracker-ok says)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="override a libtorrent setting (repeatable)")
    p.add_argument("--encryption", choices=ENCRYPTION_MODES, default="enabled",
                   help="MSE/PE policy: forced = RC4 only, both ways; disabled = plain only")
    p.add_argument("--utp-only", action="store_true", help="uTP both ways, TCP off")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("download", help="download torrents or a magnet")
    p.add_argument("torrent", nargs="*")
    p.add_argument("--magnet")
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--peer", action="append", default=[], help="HOST:PORT to connect to")
    p.add_argument("--tracker", action="append", default=[], help="also announce to this URL")
    p.add_argument("--timeout", type=float, default=DEFAULT_DOWNLOAD_TIMEOUT)
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="override a libtorrent setting (repeatable)")
    p.add_argument("--encryption", choices=ENCRYPTION_MODES, default="enabled",
                   help="MSE/PE policy: forced = RC4 only, both ways; disabled = plain only")
    p.add_argument("--utp-only", action="store_true", help="uTP both ways, TCP off")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("dht", help="run a DHT node on 127.0.0.1")
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of the node to join through")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--announce", action="append", default=[], metavar="INFOHASH_HEX",
                   help="announce our listen port for this info hash (repeatable)")
    p.add_argument("--get-peers", action="append", default=[], metavar="INFOHASH_HEX",
                   help="look this info hash up (repeatable)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="override a libtorrent setting (repeatable)")
    p.set_defaults(func=cmd_dht)

    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
