"""KRPC codec (BEP 5): byte strings in, values out, and back; hostile input refused cleanly."""

from __future__ import annotations

import random
import unittest

from sta import bencode, krpc
from sta.krpc import KrpcError, KrpcFailure, NodeInfo, Query, Response

ID = b"A" * 20
OTHER = b"B" * 20
# Random mutations tried by the fuzz tests: enough to hit every branch of the decoder many
# times, and still well under a second.
FUZZ_ROUNDS = 3000


def message(**fields: object) -> bytes:
    return bencode.encode({k.encode(): v for k, v in fields.items()})


class QueryTests(unittest.TestCase):
    def test_bep5_ping_example_decodes(self) -> None:
        data = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
        self.assertEqual(krpc.decode_message(data),
                         Query(b"aa", "ping", b"abcdefghij0123456789"))

    def test_bep5_announce_peer_example_decodes(self) -> None:
        data = (b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:"
                b"mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer"
                b"1:t2:aa1:y1:qe")
        query = krpc.decode_message(data)
        self.assertEqual(query, Query(b"aa", "announce_peer", b"abcdefghij0123456789",
                                      b"mnopqrstuvwxyz123456", token=b"aoeusnth", port=6881,
                                      implied_port=True))

    def test_encoded_query_round_trips(self) -> None:
        data = krpc.encode_query(b"xy", "get_peers", ID, info_hash=OTHER)
        self.assertEqual(krpc.decode_message(data), Query(b"xy", "get_peers", ID, OTHER))

    def test_none_arguments_are_left_out(self) -> None:
        data = krpc.encode_query(b"xy", "announce_peer", ID, info_hash=OTHER, port=1,
                                 token=b"t", implied_port=None)
        self.assertNotIn(b"implied_port", data)

    def test_unsorted_keys_from_other_clients_are_accepted(self) -> None:
        data = b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee"
        self.assertEqual(krpc.decode_message(data).method, "ping")

    def test_unknown_method_keeps_its_target_for_a_nodes_answer(self) -> None:
        data = message(t=b"aa", y=b"q", q=b"get", a={b"id": ID, b"target": OTHER})
        query = krpc.decode_message(data)
        self.assertEqual((query.method, query.target), ("get", OTHER))

    def test_read_only_flag_is_read(self) -> None:
        data = message(t=b"aa", y=b"q", q=b"ping", a={b"id": ID}, ro=1)
        self.assertFalse(krpc.decode_message(data).read_only)  # ro belongs in the arguments
        data = message(t=b"aa", y=b"q", q=b"ping", a={b"id": ID, b"ro": 1})
        self.assertTrue(krpc.decode_message(data).read_only)

    def test_query_with_short_id_is_refused(self) -> None:
        with self.assertRaisesRegex(KrpcError, "id"):
            krpc.decode_message(message(t=b"aa", y=b"q", q=b"ping", a={b"id": b"short"}))

    def test_find_node_without_target_is_refused(self) -> None:
        with self.assertRaisesRegex(KrpcError, "target"):
            krpc.decode_message(message(t=b"aa", y=b"q", q=b"find_node", a={b"id": ID}))

    def test_announce_without_token_or_port_is_refused(self) -> None:
        base = {b"id": ID, b"info_hash": OTHER}
        with self.assertRaisesRegex(KrpcError, "token"):
            krpc.decode_message(message(t=b"a", y=b"q", q=b"announce_peer",
                                        a=dict(base, port=5)))
        with self.assertRaisesRegex(KrpcError, "port"):
            krpc.decode_message(message(t=b"a", y=b"q", q=b"announce_peer",
                                        a=dict(base, token=b"x", port=70000)))


class ResponseTests(unittest.TestCase):
    def test_response_with_nodes_values_and_token_round_trips(self) -> None:
        nodes = (NodeInfo(OTHER, "10.0.0.1", 6881), NodeInfo(b"C" * 20, "10.0.0.2", 1))
        data = krpc.encode_response(b"t1", ID, nodes=nodes, values=[("1.2.3.4", 80)],
                                    token=b"tok", requester=("9.8.7.6", 5))
        self.assertEqual(krpc.decode_message(data),
                         Response(b"t1", ID, nodes, (("1.2.3.4", 80),), b"tok"))
        self.assertIn(b"2:ip6:\x09\x08\x07\x06\x00\x05", data)

    def test_bep5_get_peers_values_example_decodes(self) -> None:
        data = (b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnm"
                b"ee1:t2:aa1:y1:re")
        response = krpc.decode_message(data)
        self.assertEqual(response.values, (("97.120.106.101", 11893),
                                           ("105.100.104.116", 28269)))
        self.assertEqual(response.token, b"aoeusnth")

    def test_ipv6_and_junk_values_are_skipped(self) -> None:
        data = message(t=b"a", y=b"r", r={b"id": ID, b"values": [b"x" * 18, 5, b"\1\2\3\4\0\0",
                                                                   b"\1\2\3\4\0\7"]})
        self.assertEqual(krpc.decode_message(data).values, (("1.2.3.4", 7),))

    def test_nodes_not_in_whole_entries_are_refused(self) -> None:
        with self.assertRaisesRegex(KrpcError, "multiple of 26"):
            krpc.decode_message(message(t=b"a", y=b"r", r={b"id": ID, b"nodes": b"x" * 27}))

    def test_node_list_is_bounded(self) -> None:
        many = b"".join(bytes([i]) * 20 + b"\1\1\1\1\0\1" for i in range(40))
        data = message(t=b"a", y=b"r", r={b"id": ID, b"nodes": many})
        self.assertEqual(len(krpc.decode_message(data).nodes), krpc.MAX_NODES)

    def test_bad_token_is_dropped_not_fatal(self) -> None:
        data = message(t=b"a", y=b"r", r={b"id": ID, b"token": 5})
        self.assertIsNone(krpc.decode_message(data).token)


class ErrorTests(unittest.TestCase):
    def test_error_round_trips(self) -> None:
        data = krpc.encode_error(b"aa", 201, "A Generic Error Ocurred")
        self.assertEqual(data, b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee")
        self.assertEqual(krpc.decode_message(data), KrpcFailure(b"aa", 201,
                                                                "A Generic Error Ocurred"))

    def test_error_without_code_is_refused(self) -> None:
        with self.assertRaises(KrpcError):
            krpc.decode_message(message(t=b"a", y=b"e", e=[b"text"]))


class CompactFormTests(unittest.TestCase):
    def test_peer_round_trips(self) -> None:
        packed = krpc.pack_peer(("192.168.88.114", 6881))
        self.assertEqual(packed, b"\xc0\xa8\x58\x72\x1a\xe1")
        self.assertEqual(krpc.unpack_peer(packed), ("192.168.88.114", 6881))

    def test_peer_with_port_zero_or_wrong_length_is_refused(self) -> None:
        for data in (b"\1\2\3\4\0\0", b"\1\2\3\4\0"):
            with self.assertRaises(KrpcError):
                krpc.unpack_peer(data)

    def test_ipv6_address_cannot_be_packed(self) -> None:
        with self.assertRaisesRegex(KrpcError, "IPv4"):
            krpc.pack_address(("::1", 5))

    def test_nodes_with_port_zero_are_skipped(self) -> None:
        data = OTHER + b"\1\2\3\4\0\0" + ID + b"\1\2\3\4\0\5"
        self.assertEqual(krpc.unpack_nodes(data), (NodeInfo(ID, "1.2.3.4", 5),))


class HostileInputTests(unittest.TestCase):
    def test_refusals_are_krpc_errors(self) -> None:
        cases = [b"", b"x", b"le", b"i5e", b"d", b"de", b"d1:t0:1:y1:qe", b"d1:t2:aa1:y1:ze",
                 b"d1:t2:aa1:y1:qe", b"d1:t2:aa1:y1:q1:q4:ping1:a5:helloe",
                 b"d1:t2:aa1:y1:re", b"d" * 100, b"d1:t2:aa1:y1:rlee",
                 b"d" + b"1:ad" * 10 + b"e" * 11, b"d1:t2:aa1:y1:q" + b"x" * krpc.MAX_MESSAGE]
        for data in cases:
            with self.subTest(data=data[:40]):
                with self.assertRaises(KrpcError):
                    krpc.decode_message(data)

    def test_random_mutations_raise_only_krpc_errors(self) -> None:
        rng = random.Random(5)
        seeds = [
            krpc.encode_query(b"aa", "announce_peer", ID, info_hash=OTHER, port=1, token=b"t"),
            krpc.encode_response(b"aa", ID, nodes=[NodeInfo(OTHER, "1.2.3.4", 5)],
                                 values=[("1.2.3.4", 5)], token=b"x"),
            krpc.encode_error(b"aa", 203, "x"),
        ]
        for _ in range(FUZZ_ROUNDS):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                where = rng.randrange(len(data) + 1)
                action = rng.randrange(3)
                if action == 0 and data:
                    data[min(where, len(data) - 1)] = rng.randrange(256)
                elif action == 1:
                    data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
                else:
                    del data[where:where + rng.randint(1, 8)]
            try:
                result = krpc.decode_message(bytes(data))
            except KrpcError:
                continue
            self.assertIsInstance(result, (Query, Response, KrpcFailure))


if __name__ == "__main__":
    unittest.main()
