"""KRPC, the DHT's message format (BEP 5): queries, responses and errors as values, sans-IO.

``decode_message(datagram)`` turns one UDP payload into a ``Query``, ``Response`` or
``KrpcFailure`` (an error message), or raises ``KrpcError`` saying what is wrong; the
``encode_*`` functions turn values into payloads. Nothing here opens a socket or reads a clock.

The decoder is strict about what it uses and lenient about what it does not: every field the
DHT reads is checked for type and size (node ids of 20 bytes, compact node lists in whole
26-byte entries, ports from 1 to 65535), unknown keys are ignored (BEP 5: "additional
arguments may be added"; libtorrent adds ``ro``, ``want``, ``ip`` and ``v``), and dictionaries
with out-of-order keys are accepted as libtorrent accepts them. Only IPv4 compact forms are
read: ``nodes6`` and six-in-four values (BEP 32) are skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import bencode

__all__ = [
    "KrpcError", "NodeInfo", "Query", "Response", "KrpcFailure", "Message", "decode_message",
    "encode_query", "encode_response", "encode_error", "pack_nodes", "unpack_nodes",
    "pack_peer", "unpack_peer", "pack_address", "ID_LENGTH", "ERROR_GENERIC", "ERROR_PROTOCOL",
    "ERROR_METHOD_UNKNOWN", "QUERY_METHODS",
]

Address = Tuple[str, int]

# Node ids and info hashes are SHA-1 sized (BEP 5).
ID_LENGTH = 20
# One compact node: id, IPv4 address, port (BEP 5 "Compact node info").
NODE_LENGTH = ID_LENGTH + 6
# One compact peer: IPv4 address and port (BEP 5 "Compact IP-address/port info").
PEER_LENGTH = 6
# Largest datagram decoded. A full get_peers answer (100 values as libtorrent's
# dht_max_peers_reply allows, 8 nodes, token, ip) is under 1,100 bytes, and libtorrent reads DHT
# packets into a 1,500-byte buffer; four times that leaves room for extensions, not for abuse.
MAX_MESSAGE = 6000
# Longest transaction id kept: BEP 5 says two bytes are enough; libtorrent sends 2, some
# clients 4 or 8. A longer one is not a DHT message worth answering.
MAX_TRANSACTION_ID = 16
# Longest token accepted: libtorrent sends 4 bytes, Transmission 8; BEP 5 leaves it open.
MAX_TOKEN = 64
# Values read from one response: libtorrent's dht_max_peers_reply is 100; more is ignored.
MAX_VALUES = 200
# Nodes read from one response: BEP 5 returns K = 8; libtorrent may send up to 8 in nodes and
# as many in nodes6. More than this is ignored, never an error.
MAX_NODES = 16
# Longest method name and error text kept (a bound on what a log line may carry).
MAX_METHOD = 32
MAX_ERROR_TEXT = 200
# Depth of nesting a KRPC message needs: message dict, args dict, values list. Deeper is junk.
MAX_DEPTH = 4

# BEP 5 error codes.
ERROR_GENERIC = 201
ERROR_SERVER = 202
ERROR_PROTOCOL = 203
ERROR_METHOD_UNKNOWN = 204

QUERY_METHODS = ("ping", "find_node", "get_peers", "announce_peer")


class KrpcError(ValueError):
    """A datagram is not a KRPC message we can use; the message says why."""


@dataclass(frozen=True)
class NodeInfo:
    """A DHT node: its 20-byte id and its UDP address."""
    node_id: bytes
    host: str
    port: int

    @property
    def address(self) -> Address:
        return (self.host, self.port)


@dataclass(frozen=True)
class Query:
    """A query. ``target`` is find_node's target or get_peers/announce_peer's info hash (and,
    for an unknown method, whichever of the two it carried)."""
    tid: bytes
    method: str
    sender: bytes
    target: Optional[bytes] = None
    token: Optional[bytes] = None
    port: Optional[int] = None
    implied_port: bool = False
    read_only: bool = False


@dataclass(frozen=True)
class Response:
    """A response: the responder's id and whatever it sent of nodes, values and token."""
    tid: bytes
    sender: bytes
    nodes: Tuple[NodeInfo, ...] = ()
    values: Tuple[Address, ...] = ()
    token: Optional[bytes] = None


@dataclass(frozen=True)
class KrpcFailure:
    """An error message (BEP 5 ``y: e``)."""
    tid: bytes
    code: int
    text: str = field(default="")


Message = Union[Query, Response, KrpcFailure]


# ------------------------------------------------------------------------------ compact forms

def pack_address(address: Address) -> bytes:
    """(IPv4 host, port) -> 6 bytes; KrpcError for anything else."""
    host, port = address
    try:
        packed = ipaddress.IPv4Address(host).packed
    except (ipaddress.AddressValueError, ValueError):
        raise KrpcError(f"not an IPv4 address: {host!r}") from None
    if not 0 < port < 65536:
        raise KrpcError(f"port {port} out of range")
    return packed + struct.pack(">H", port)


def pack_peer(address: Address) -> bytes:
    return pack_address(address)


def unpack_peer(data: bytes) -> Address:
    """6 bytes -> (host, port); KrpcError if the length or the port is wrong."""
    if len(data) != PEER_LENGTH:
        raise KrpcError(f"compact peer of {len(data)} bytes, expected {PEER_LENGTH}")
    port = struct.unpack(">H", data[4:6])[0]
    if port == 0:
        raise KrpcError("compact peer with port 0")
    return str(ipaddress.IPv4Address(data[:4])), port


def pack_nodes(nodes: Sequence[NodeInfo]) -> bytes:
    return b"".join(node.node_id + pack_address(node.address) for node in nodes)


def unpack_nodes(data: bytes, limit: int = MAX_NODES) -> Tuple[NodeInfo, ...]:
    """Compact node info -> nodes (at most ``limit``; entries with port 0 are skipped)."""
    if len(data) % NODE_LENGTH:
        raise KrpcError(f"compact node list of {len(data)} bytes, not a multiple of "
                        f"{NODE_LENGTH}")
    found: List[NodeInfo] = []
    for start in range(0, min(len(data), limit * NODE_LENGTH), NODE_LENGTH):
        entry = data[start:start + NODE_LENGTH]
        port = struct.unpack(">H", entry[24:26])[0]
        if port:
            found.append(NodeInfo(entry[:20], str(ipaddress.IPv4Address(entry[20:24])), port))
    return tuple(found)


# ---------------------------------------------------------------------------------- encoding

def encode_query(tid: bytes, method: str, sender: bytes, **args: Any) -> bytes:
    """A query datagram: ``encode_query(t, "get_peers", our_id, info_hash=h)``. Arguments
    whose value is None are left out."""
    body: Dict[bytes, Any] = {b"id": sender}
    for name, value in args.items():
        if value is not None:
            body[name.encode()] = int(value) if isinstance(value, bool) else value
    return bencode.encode({b"t": tid, b"y": b"q", b"q": method.encode(), b"a": body})


def encode_response(tid: bytes, sender: bytes, *, nodes: Sequence[NodeInfo] = (),
                    values: Sequence[Address] = (), token: Optional[bytes] = None,
                    requester: Optional[Address] = None) -> bytes:
    """A response datagram; ``requester`` becomes the BEP 42 ``ip`` key (where the query came
    from, so the other side learns its external address)."""
    body: Dict[bytes, Any] = {b"id": sender}
    if nodes:
        body[b"nodes"] = pack_nodes(nodes)
    if values:
        body[b"values"] = [pack_peer(v) for v in values]
    if token is not None:
        body[b"token"] = token
    message: Dict[bytes, Any] = {b"t": tid, b"y": b"r", b"r": body}
    if requester is not None:
        try:
            message[b"ip"] = pack_address(requester)
        except KrpcError:
            pass  # an IPv6 requester: no ip key rather than a wrong one
    return bencode.encode(message)


def encode_error(tid: bytes, code: int, text: str) -> bytes:
    return bencode.encode({b"t": tid, b"y": b"e", b"e": [code, text.encode("utf-8", "replace")]})


# ---------------------------------------------------------------------------------- decoding

def decode_message(data: bytes) -> Message:
    """One datagram -> Query, Response or KrpcFailure; KrpcError says why it is none of them."""
    if len(data) > MAX_MESSAGE:
        raise KrpcError(f"datagram of {len(data)} bytes, more than {MAX_MESSAGE}")
    if not data.startswith(b"d"):
        raise KrpcError("not a bencoded dictionary")
    try:
        message = bencode.decode(data, sorted_keys=False)
    except bencode.BencodeError as exc:
        raise KrpcError(f"bad bencoding: {exc}") from None
    if not isinstance(message, dict) or _depth(message) > MAX_DEPTH:
        raise KrpcError("not a KRPC dictionary")
    tid = message.get(b"t")
    if not isinstance(tid, bytes) or not 0 < len(tid) <= MAX_TRANSACTION_ID:
        raise KrpcError("missing or bad transaction id")
    kind = message.get(b"y")
    if kind == b"q":
        return _decode_query(tid, message)
    if kind == b"r":
        return _decode_response(tid, message)
    if kind == b"e":
        return _decode_error(tid, message)
    raise KrpcError("message type is not q, r or e")


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level] + [_depth(v, level + 1) for v in value.values()])
    if isinstance(value, list):
        return max([level] + [_depth(v, level + 1) for v in value])
    return level - 1


def _node_id(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_LENGTH:
        raise KrpcError(f"{what} is not {ID_LENGTH} bytes")
    return value


def _decode_query(tid: bytes, message: Dict[bytes, Any]) -> Query:
    method = message.get(b"q")
    args = message.get(b"a")
    if not isinstance(method, bytes) or not 0 < len(method) <= MAX_METHOD:
        raise KrpcError("query without a method name")
    if not isinstance(args, dict):
        raise KrpcError("query without arguments")
    name = method.decode("ascii", "replace")
    sender = _node_id(args.get(b"id"), "querying node's id")
    target = args.get(b"target") if name == "find_node" else args.get(b"info_hash")
    if name not in QUERY_METHODS:
        target = args.get(b"target", args.get(b"info_hash"))
        target = target if isinstance(target, bytes) and len(target) == ID_LENGTH else None
    elif name != "ping":
        target = _node_id(target, "target" if name == "find_node" else "info_hash")
    read_only = args.get(b"ro") == 1
    if name != "announce_peer":
        return Query(tid, name, sender, target, read_only=read_only)
    token = args.get(b"token")
    if not isinstance(token, bytes) or not 0 < len(token) <= MAX_TOKEN:
        raise KrpcError("announce_peer without a token")
    implied = args.get(b"implied_port") == 1
    port = args.get(b"port")
    if not implied and (not isinstance(port, int) or not 0 < port < 65536):
        raise KrpcError("announce_peer without a valid port")
    return Query(tid, name, sender, target, token=token,
                 port=port if isinstance(port, int) and 0 < port < 65536 else None,
                 implied_port=implied, read_only=read_only)


def _decode_response(tid: bytes, message: Dict[bytes, Any]) -> Response:
    body = message.get(b"r")
    if not isinstance(body, dict):
        raise KrpcError("response without a body")
    sender = _node_id(body.get(b"id"), "responding node's id")
    nodes: Tuple[NodeInfo, ...] = ()
    raw_nodes = body.get(b"nodes")
    if raw_nodes is not None:
        if not isinstance(raw_nodes, bytes):
            raise KrpcError("nodes is not a string")
        nodes = unpack_nodes(raw_nodes)
    values: List[Address] = []
    raw_values = body.get(b"values")
    if raw_values is not None:
        if not isinstance(raw_values, list):
            raise KrpcError("values is not a list")
        for item in raw_values[:MAX_VALUES]:
            if isinstance(item, bytes) and len(item) == PEER_LENGTH and item[4:6] != b"\0\0":
                values.append(unpack_peer(item))  # others: IPv6 peers or junk, skipped
    token = body.get(b"token")
    if token is not None and (not isinstance(token, bytes) or not 0 < len(token) <= MAX_TOKEN):
        token = None  # a bad token only means we cannot announce to this node
    return Response(tid, sender, nodes, tuple(values), token)


def _decode_error(tid: bytes, message: Dict[bytes, Any]) -> KrpcFailure:
    body = message.get(b"e")
    if not isinstance(body, list) or not body or not isinstance(body[0], int):
        raise KrpcError("error message without a code")
    text = body[1] if len(body) > 1 and isinstance(body[1], bytes) else b""
    return KrpcFailure(tid, body[0], text[:MAX_ERROR_TEXT].decode("utf-8", "replace"))
