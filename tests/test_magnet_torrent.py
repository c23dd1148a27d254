"""Tests for sta.magnet_torrent: fetching the info dictionary from peers, then handing the
connections and the announcer to the torrent it describes."""

import tempfile
import unittest
from unittest import mock

from sta import ut_metadata, wire
from sta.announce import AnnounceResponse
from sta.bitfield import Bitfield
from sta.magnet import Magnet
from sta.magnet_torrent import METADATA, MagnetTorrent, saved_metainfo
from sta.memstorage import MemoryStorage
from sta.peerproto import EXTENSION_IDS, UT_METADATA
from sta.torrent import DOWNLOADING, Torrent
from tests.fakes import FakeConnection, FakeHost, join, make_torrent, receive

PIECES = 8
PIECE = 16 * 1024
TRACKER = "http://127.0.0.1:1/announce"
OUR_UT_METADATA = EXTENSION_IDS[UT_METADATA]
STATUS_KEYS = {"name", "info_hash", "state", "size", "have", "progress", "down_rate",
               "up_rate", "downloaded", "uploaded", "peers", "seeds", "eta", "error",
               "trackers", "known", "failed"}


def addr(n):
    return ("10.0.0.%d" % n, 6881)


def offer(size):
    """A peer's BEP 10 handshake offering the info dictionary."""
    return wire.ExtendedHandshake({b"m": {b"ut_metadata": 3}, b"metadata_size": size})


class Kit(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost(self)
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = folder.name
        self.built = make_torrent(PIECES * PIECE, PIECE)
        self.raw = self.built.info.raw
        self.announces = []
        patcher = mock.patch("sta.announce.announce", self.fake_announce)
        patcher.start()
        self.addCleanup(patcher.stop)

    def fake_announce(self, url, **params):
        self.announces.append(params["event"])
        return AnnounceResponse(interval=1800, min_interval=None, peers=[addr(99)],
                                tracker_id=None, complete=None, incomplete=None, warning=None)

    def magnet(self, build=True, **fields):
        link = Magnet(self.built.info.info_hash, name="t", **fields)
        self.built_torrents = []

        def make(meta):
            torrent = Torrent(self.host, meta, MemoryStorage(meta.info))
            self.built_torrents.append(torrent)
            return torrent
        return MagnetTorrent(self.host, link, self.folder, make if build else None)

    def metadata_peer(self, stand_in, n):
        """A joined peer that offers the metadata and has been asked for it."""
        conn = FakeConnection(addr(n), ids={})
        self.assertTrue(join(stand_in, conn))
        receive(conn, offer(len(self.raw)))
        return conn

    def answer(self, conn, data=None):
        data = self.raw if data is None else data
        receive(conn, wire.Extended(OUR_UT_METADATA, ut_metadata.metadata_data(0, len(data), data)))


class FetchTests(Kit):
    def test_start_dials_the_peers_the_link_names(self):
        stand_in = self.magnet(peers=("10.0.0.5:6881", "[fe80::1]:7000"))
        self.host.run(stand_in.start())
        self.assertEqual(sorted(self.host.dialled_addresses()),
                         [("10.0.0.5", 6881), ("fe80::1", 7000)])
        self.assertEqual(stand_in.state, METADATA)

    def test_metadata_is_asked_only_of_peers_offering_it(self):
        stand_in = self.magnet()
        asked = self.metadata_peer(stand_in, 1)
        plain = FakeConnection(addr(2))
        join(stand_in, plain)
        receive(plain, wire.ExtendedHandshake({b"m": {b"ut_pex": 1}}))
        stand_in.tick(1.0)
        self.assertEqual(asked.of("extended"), [(UT_METADATA, ut_metadata.metadata_request(0))])
        self.assertEqual(plain.of("extended"), [])

    def test_a_metadata_request_from_a_peer_is_rejected(self):
        stand_in = self.magnet()
        conn = self.metadata_peer(stand_in, 1)
        receive(conn, wire.Extended(OUR_UT_METADATA, ut_metadata.metadata_request(0)))
        self.assertEqual(conn.of("extended")[-1], (UT_METADATA, ut_metadata.metadata_reject(0)))

    def test_a_peer_whose_whole_copy_fails_the_hash_is_banned(self):
        stand_in = self.magnet()
        liar = self.metadata_peer(stand_in, 1)
        with self.assertLogs("sta", "WARNING"):
            self.answer(liar, bytes(len(self.raw)))
        self.assertTrue(liar.closed)
        again = FakeConnection(("10.0.0.1", 40000), peer_id=liar.peer_id, incoming=True)
        self.assertFalse(join(stand_in, again))
        self.assertIsNone(stand_in.fetcher.done)

    def test_without_a_build_the_verified_dictionary_is_kept(self):
        stand_in = self.magnet(build=False)
        self.answer(self.metadata_peer(stand_in, 1))
        self.assertEqual(stand_in.fetched, self.raw)
        self.assertEqual(stand_in.state, "fetched")
        self.assertTrue(stand_in.done.is_set())

    def test_status_has_the_torrents_keys(self):
        stand_in = self.magnet(length=PIECES * PIECE)
        stand_in.add_peers([addr(1)])
        status = stand_in.status()
        self.assertEqual(set(status), STATUS_KEYS)
        self.assertEqual((status["state"], status["size"], status["known"]),
                         (METADATA, PIECES * PIECE, 1))


class HandOverTests(Kit):
    def hand_over(self):
        """A stand-in announcing to a tracker, with a peer that told its bitfield and a have,
        and a peer that sends the metadata; returns (stand-in, torrent, those two peers)."""
        stand_in = self.magnet(trackers=(TRACKER,))
        stand_in.start_announcing()
        self.host.wait_until(lambda: addr(99) in stand_in.swarm.known)
        partial = FakeConnection(addr(1))
        self.assertTrue(join(stand_in, partial))
        receive(partial, wire.BitfieldMessage(Bitfield.from_indices(PIECES, [1, 2]).to_bytes()),
                wire.Have(5))
        sender = self.metadata_peer(stand_in, 2)
        self.answer(sender)
        self.host.wait_until(stand_in.done.is_set)
        (torrent,) = self.built_torrents
        return stand_in, torrent, partial, sender

    def test_the_built_torrent_takes_the_place_and_the_connections(self):
        stand_in, torrent, partial, sender = self.hand_over()
        self.assertEqual(self.host.replaced, [(stand_in, torrent)])
        self.assertIs(stand_in.successor, torrent)
        self.assertEqual(stand_in.state, "handed over")
        self.assertEqual(torrent.state, DOWNLOADING)
        self.assertEqual(torrent.peers, {partial, sender})
        self.assertIs(partial.owner, torrent)
        self.assertEqual(stand_in.peers, set())

    def test_bitfield_and_haves_said_before_the_metadata_are_replayed(self):
        stand_in, torrent, partial, sender = self.hand_over()
        progress = {row["address"]: row["progress"] for row in torrent.peer_statuses()}
        self.assertEqual(progress["10.0.0.1:6881"], 3 / PIECES)
        self.assertEqual(progress["10.0.0.2:6881"], 0.0)
        self.assertTrue(partial.am_interested)
        self.assertFalse(sender.am_interested)

    def test_the_running_announcer_moves_to_the_torrent(self):
        stand_in, torrent, partial, sender = self.hand_over()
        self.host.drain()
        self.assertEqual(self.announces, ["started"])  # no second "started"
        self.assertEqual(torrent.status()["trackers"],
                         [{"url": TRACKER, "error": None, "peers": 1}])
        self.assertEqual(stand_in.status()["trackers"], [])
        self.assertIn(addr(99), torrent.swarm.known)

    def test_the_metadata_is_saved_as_a_torrent_file(self):
        stand_in, torrent, partial, sender = self.hand_over()
        saved = saved_metainfo(stand_in.magnet, self.folder)
        self.assertIsNotNone(saved)
        self.assertEqual(saved.info_hash, self.built.info.info_hash)
        self.assertEqual(saved.trackers, ((TRACKER,),))

    def test_late_arrivals_go_to_the_torrent(self):
        stand_in, torrent, partial, sender = self.hand_over()
        late = FakeConnection(addr(3))
        self.assertTrue(join(stand_in, late))
        self.assertIs(late.owner, torrent)
        self.assertIn(late, torrent.peers)
        stand_in.dial_failed(addr(99))
        self.assertEqual(torrent.swarm.known[addr(99)].failures, 1)

    def test_a_build_that_fails_ends_the_stand_in_with_the_error(self):
        link = Magnet(self.built.info.info_hash, name="t")

        def broken(meta):
            raise OSError("no room for the files")
        stand_in = MagnetTorrent(self.host, link, self.folder, broken)
        self.answer(self.metadata_peer(stand_in, 1))
        self.host.wait_until(stand_in.done.is_set)
        self.assertEqual(stand_in.state, "error")
        self.assertEqual(stand_in.error, "no room for the files")
        self.assertEqual(self.host.replaced, [])


if __name__ == "__main__":
    unittest.main()
