"""Piece bitfields: which pieces a party holds, in the wire order of BEP 3.

A Bitfield is ``n`` bits over a bytearray. Bit order is the one of the ``bitfield`` message
(BEP 3): the high bit of byte 0 is piece 0, the low bit of byte 0 is piece 7, and the spare bits
after piece ``n - 1`` in the last byte are always zero, so ``to_bytes()`` can go on the wire as is.

It sits on the hot path (one membership test per picked piece, one ``set`` per ``have``
message), so the set-bit count is kept up to date on every change and ``count``/``complete``
are O(1). For whole-field work (intersections, "does this peer have anything we need?") the
field converts to a Python int, cached until the next change; there bit ``i`` of the int is
piece ``i``, so ``1 << i`` addresses a piece and the bit operations run in C.
"""

from __future__ import annotations

from typing import Iterable, Iterator

__all__ = ["Bitfield", "BitfieldError"]


class BitfieldError(ValueError):
    """A bitfield of the wrong size, or with bits set past the last piece (strict mode)."""


# Number of set bits of each byte value: ``sum(data.translate(_POPCOUNT))`` counts a whole
# buffer in C.
_POPCOUNT = bytes(bin(i).count("1") for i in range(256))
# Each byte value with its bit order reversed: turns BEP 3 order (piece 0 = high bit) into the
# int order (piece 0 = low bit) and back, one C call for the whole buffer.
_REVERSE = bytes(int("{:08b}".format(i)[::-1], 2) for i in range(256))
# Offsets (0 = high bit) of the set bits of each byte value, so iteration costs one Python step
# per set bit, not per bit.
_SET_OFFSETS = tuple(tuple(j for j in range(8) if i & (0x80 >> j)) for i in range(256))


def _nbytes(n: int) -> int:
    return (n + 7) >> 3


def _spare_mask(n: int) -> int:
    """Mask of the spare (padding) bits in the last byte of an ``n``-bit field."""
    spare = (-n) & 7
    return (1 << spare) - 1


class Bitfield:
    """``n`` bits in BEP 3 order with an O(1) count.

    ``i in bf`` is False for any ``i`` outside ``0 <= i < n``; ``set``/``clear`` raise
    IndexError there, because a caller setting a piece that does not exist is a bug.
    """

    __slots__ = ("_n", "_bits", "_count", "_int")

    def __init__(self, n: int) -> None:
        if n < 0:
            raise BitfieldError("a bitfield cannot have a negative number of bits ({})".format(n))
        self._n = n
        self._bits = bytearray(_nbytes(n))
        self._count = 0
        self._int = 0  # cached to_int() value; None once a change made it stale

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, n: int, strict: bool = False) -> "Bitfield":
        """Build from the payload of a ``bitfield`` message for a torrent of ``n`` pieces.

        A payload of the wrong length is always rejected (BitfieldError, a ValueError): BEP 3
        says to drop such a peer, and libtorrent and Transmission both do.

        Spare bits set past the last piece are cleared silently unless ``strict`` is true.
        BEP 3 says clients *should* drop a peer that sets them, but libtorrent (its bitfield
        keeps only ``num_pieces`` bits of the payload) and Transmission (``setRaw`` masks the
        excess bits) both accept such a bitfield and ignore the padding. The spare bits carry
        no information, so dropping the peer would cost a working connection and gain nothing;
        we match the clients. ``strict=True`` is for tests and fuzzing.
        """
        nbytes = _nbytes(n)
        if len(data) != nbytes:
            raise BitfieldError(
                "bitfield is {} bytes long, expected {} for {} pieces".format(len(data), nbytes, n))
        self = cls.__new__(cls)
        self._n = n
        bits = bytearray(data)
        spare = _spare_mask(n)
        if spare and bits[-1] & spare:
            if strict:
                raise BitfieldError("bitfield has bits set after the last piece ({})".format(n - 1))
            bits[-1] &= 0xFF ^ spare
        self._bits = bits
        self._count = sum(bits.translate(_POPCOUNT))
        self._int = None
        return self

    @classmethod
    def full(cls, n: int) -> "Bitfield":
        """All ``n`` bits set (a seed; BEP 6 ``have_all``)."""
        self = cls(n)
        if n:
            bits = bytearray(b"\xff") * _nbytes(n)
            bits[-1] &= 0xFF ^ _spare_mask(n)
            self._bits = bits
            self._count = n
            self._int = None
        return self

    @classmethod
    def from_int(cls, value: int, n: int) -> "Bitfield":
        """The inverse of ``to_int``: bit ``i`` of ``value`` is piece ``i``; bits >= n ignored."""
        if value < 0:
            raise BitfieldError("bitfield int must not be negative")
        value &= (1 << n) - 1
        self = cls.__new__(cls)
        self._n = n
        self._bits = bytearray(value.to_bytes(_nbytes(n), "little").translate(_REVERSE))
        self._count = _popcount(value)
        self._int = value
        return self

    @classmethod
    def from_indices(cls, n: int, indices: Iterable[int]) -> "Bitfield":
        """A field of ``n`` bits with the given pieces set."""
        self = cls(n)
        for i in indices:
            self.set(i)
        return self

    def copy(self) -> "Bitfield":
        other = Bitfield.__new__(Bitfield)
        other._n = self._n
        other._bits = bytearray(self._bits)
        other._count = self._count
        other._int = self._int
        return other

    # -- conversion -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The ``bitfield`` message payload (spare bits zero)."""
        return bytes(self._bits)

    def to_int(self) -> int:
        """The field as an int with bit ``i`` = piece ``i`` (cached until the next change)."""
        value = self._int
        if value is None:
            value = self._int = int.from_bytes(self._bits.translate(_REVERSE), "little")
        return value

    # -- single bits (hot path) -----------------------------------------------------------

    def __contains__(self, i: int) -> bool:
        return 0 <= i < self._n and (self._bits[i >> 3] & (0x80 >> (i & 7))) != 0

    def set(self, i: int) -> bool:
        """Set bit ``i``; returns True if it was clear (so the caller can count a new piece)."""
        if not 0 <= i < self._n:
            raise IndexError("piece index {} out of range (0..{})".format(i, self._n - 1))
        j = i >> 3
        mask = 0x80 >> (i & 7)
        byte = self._bits[j]
        if byte & mask:
            return False
        self._bits[j] = byte | mask
        self._count += 1
        self._int = None
        return True

    def clear(self, i: int) -> bool:
        """Clear bit ``i``; returns True if it was set."""
        if not 0 <= i < self._n:
            raise IndexError("piece index {} out of range (0..{})".format(i, self._n - 1))
        j = i >> 3
        mask = 0x80 >> (i & 7)
        byte = self._bits[j]
        if not byte & mask:
            return False
        self._bits[j] = byte & ~mask
        self._count -= 1
        self._int = None
        return True

    # -- whole field ----------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of set bits, O(1)."""
        return self._count

    @property
    def complete(self) -> bool:
        """All bits set (a seed). A 0-bit field is complete."""
        return self._count == self._n

    def __len__(self) -> int:
        return self._n

    def any(self) -> bool:
        return self._count != 0

    def iter_set(self) -> Iterator[int]:
        """Indices of the set bits, ascending."""
        offsets = _SET_OFFSETS
        for j, byte in enumerate(self._bits):
            if byte:
                base = j << 3
                for k in offsets[byte]:
                    yield base + k

    def _check_same_size(self, other: "Bitfield") -> None:
        if not isinstance(other, Bitfield):
            raise TypeError("expected a Bitfield, got {}".format(type(other).__name__))
        if other._n != self._n:
            raise BitfieldError("bitfields differ in size ({} and {} bits)".format(self._n, other._n))

    def __and__(self, other: "Bitfield") -> "Bitfield":
        self._check_same_size(other)
        return Bitfield.from_int(self.to_int() & other.to_int(), self._n)

    def __or__(self, other: "Bitfield") -> "Bitfield":
        self._check_same_size(other)
        return Bitfield.from_int(self.to_int() | other.to_int(), self._n)

    def __sub__(self, other: "Bitfield") -> "Bitfield":
        """Bits set here and clear in ``other``."""
        self._check_same_size(other)
        return Bitfield.from_int(self.to_int() & ~other.to_int(), self._n)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bitfield):
            return NotImplemented
        return self._n == other._n and self._bits == other._bits

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "Bitfield(n={}, count={})".format(self._n, self._count)


def _popcount_bin(value: int) -> int:
    return bin(value).count("1")


# int.bit_count exists from Python 3.10; the bin() fallback is the same result, a bit slower.
_popcount = getattr(int, "bit_count", _popcount_bin)
