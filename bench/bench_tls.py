"""Time sta.tls.TlsLayer: the cost of encrypting a peer link. Prints figures; asserts nothing.

    python3 bench/bench_tls.py [--size 1GiB]

- in memory: one TlsLayer encrypts the stream and another decrypts it, in one thread, for
  several write sizes; the encrypt and decrypt times are measured apart. This is the whole CPU
  price of TLS for one side of a transfer (a seed pays the encrypt half, a downloader the other);
- piece messages: the same, written as a seed writes them (13-byte header + 16 KiB block, 16
  messages per send_many batch), so the coalescing of small buffers is in the figure;
- loopback: a child process sends the stream over a TCP connection on 127.0.0.1 to this one,
  plain and then through TlsLayer on both ends, so the ratio TLS / plain includes the socket.

- link setup: complete SecureLinks (TLS 1.3 handshake with the RSA-2048 certificate, then the
  info-hash proof) per second, both ends in this process: the price of each new connection.

The target for a whole encrypted transfer is 70% of plain speed. The engine's plain transfer
runs at about 250 MB/s here (4 ns per byte on its busier side), so TLS may add up to about
1.7 ns per byte there; encrypting and decrypting cost a fraction of a nanosecond per byte.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sta import peerlink, tls, x509  # noqa: E402

MIB = 1024 * 1024
WRITE_SIZES = (16 * 1024, 64 * 1024, 256 * 1024)
# What asyncio hands a protocol per read on loopback; the receiving side decrypts this much per
# receive() call.
READ_SIZE = 256 * 1024
ROUNDS = 3  # best of: the figure is the machine's, not its neighbours'
BLOCK = 16 * 1024
LINK_SETUPS = 200


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.lower().rstrip("ib")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)


def identity(folder: str) -> tuple:
    cert, key = x509.make_self_signed("bench", ["127.0.0.1"])
    paths = (os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
    for path, data in zip(paths, (cert, key)):
        with open(path, "wb") as f:
            f.write(data)
    return paths


def layer_pair(certfile: str, keyfile: str) -> tuple:
    client = tls.TlsLayer(tls.client_context(), server_side=False)
    server = tls.TlsLayer(tls.server_context(certfile, keyfile), server_side=True)
    to_server = client.start()
    for _ in range(10):
        server.receive(to_server)
        client.receive(server.outgoing())
        to_server = client.outgoing()
        if client.handshake_complete and server.handshake_complete and not to_server:
            break
    return client, server


def in_memory(paths: tuple, size: int, write_size: int) -> tuple:
    """(encrypt s, decrypt s) for ``size`` bytes written ``write_size`` at a time."""
    client, server = layer_pair(*paths)
    chunk = os.urandom(write_size)
    enc = dec = 0.0
    done = 0
    perf = time.perf_counter
    while done < size:
        t0 = perf()
        wire = client.send(chunk)
        t1 = perf()
        view = memoryview(wire)
        for i in range(0, len(wire), READ_SIZE):
            server.receive(view[i:i + READ_SIZE])
        dec += perf() - t1
        enc += t1 - t0
        done += write_size
    return enc, dec


def piece_messages(paths: tuple, size: int) -> tuple:
    client, server = layer_pair(*paths)
    block = os.urandom(BLOCK)
    batch = []
    for i in range(16):
        batch += [(BLOCK + 9).to_bytes(4, "big") + b"\x07" + (0).to_bytes(4, "big")
                  + (i * BLOCK).to_bytes(4, "big"), block]
    enc = dec = 0.0
    done = 0
    perf = time.perf_counter
    while done < size:
        t0 = perf()
        wire = client.send_many(batch)
        t1 = perf()
        server.receive(wire)
        dec += perf() - t1
        enc += t1 - t0
        done += 16 * BLOCK
    return enc, dec


def link_setups(paths: tuple, count: int) -> float:
    """Seconds for ``count`` complete SecureLinks (handshake and proof) in memory."""
    node = peerlink.PeerTls(*paths)
    info_hash = bytes(range(20))
    lookup = {peerlink.torrent_id(info_hash): info_hash}.get
    start = time.perf_counter()
    for _ in range(count):
        client, server = node.connect(info_hash), node.accept(lookup)
        to_server = client.start()
        while not (client.authenticated and server.authenticated):
            server.receive(to_server)
            client.receive(server.outgoing())
            to_server = client.outgoing()
    return time.perf_counter() - start


def sender(port: int, mode: str, size: int, certfile: str, keyfile: str) -> None:
    """Child process: connect and send ``size`` bytes, plain or as a TLS client."""
    sock = socket.create_connection(("127.0.0.1", port))
    chunk = os.urandom(READ_SIZE)
    if mode == "tls":
        layer = tls.TlsLayer(tls.client_context(), server_side=False)
        sock.sendall(layer.start())
        while not layer.handshake_complete:
            layer.receive(sock.recv(65536))
            sock.sendall(layer.outgoing())
        send = layer.send
        for _ in range(size // READ_SIZE):
            sock.sendall(send(chunk))
        sock.sendall(layer.close())
    else:
        for _ in range(size // READ_SIZE):
            sock.sendall(chunk)
    sock.close()


def loopback(paths: tuple, size: int, mode: str) -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", str(port),
                              mode, str(size), *paths])
    try:
        conn, _ = listener.accept()
        listener.close()
        start = time.perf_counter()
        total = 0
        buf = bytearray(READ_SIZE)
        if mode == "tls":
            layer = tls.TlsLayer(tls.server_context(*paths), server_side=True)
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += len(layer.receive(memoryview(buf)[:n]))
                out = layer.outgoing()
                if out:
                    conn.sendall(out)
        else:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
        elapsed = time.perf_counter() - start
        conn.close()
    finally:
        child.wait(60)
    assert total == size // READ_SIZE * READ_SIZE, total
    return elapsed


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        port, mode, size, certfile, keyfile = sys.argv[2:7]
        sender(int(port), mode, int(size), certfile, keyfile)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GiB", help="bytes per measurement (default 1GiB)")
    args = parser.parse_args()
    size = parse_size(args.size)
    mb = size / 1e6
    with tempfile.TemporaryDirectory() as folder:
        paths = identity(folder)
        client, _ = layer_pair(*paths)
        version = sys.version.split()[0]
        print(f"sta.tls benchmark, Python {version}, RSA-{x509.RSA_BITS} self-made certificate, "
              f"{client.version} {client.cipher}, {args.size} per figure, best of {ROUNDS}")
        print(f"reproduce: python3 bench/bench_tls.py --size {args.size}")
        for write_size in WRITE_SIZES:
            enc, dec = min((in_memory(paths, size, write_size) for _ in range(ROUNDS)),
                           key=sum)
            print(f"  in memory, {write_size // 1024:3d} KiB writes: encrypt {mb / enc:6.0f} MB/s"
                  f"  decrypt {mb / dec:6.0f} MB/s  both {mb / (enc + dec):6.0f} MB/s")
        enc, dec = min((piece_messages(paths, size) for _ in range(ROUNDS)), key=sum)
        print(f"  piece messages, send_many x16:   encrypt {mb / enc:6.0f} MB/s  decrypt "
              f"{mb / dec:6.0f} MB/s  both {mb / (enc + dec):6.0f} MB/s")
        setups = min(link_setups(paths, LINK_SETUPS) for _ in range(ROUNDS))
        print(f"  link setup (TLS + proof), both ends: {LINK_SETUPS / setups:5.0f} per second "
              f"({setups / LINK_SETUPS * 1000:.1f} ms each)")
        plain = min(loopback(paths, size, "plain") for _ in range(ROUNDS))
        secure = min(loopback(paths, size, "tls") for _ in range(ROUNDS))
        print(f"  loopback socket, 2 processes:    plain {mb / plain:6.0f} MB/s  "
              f"TLS {mb / secure:6.0f} MB/s  ratio {plain / secure * 100:3.0f}%")


if __name__ == "__main__":
    main()
