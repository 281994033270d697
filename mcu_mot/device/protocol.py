"""Wire protocol v1 (docs/protocol.md), host side: frames, payload packing and parsing.

A frame is type, seq, u16 len, payload, u32 CRC-32 (zlib.crc32 of everything before it),
COBS-encoded and delimited by 0x00. Nothing here does I/O: see transport.py.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from cobs import cobs

VERSION = 1
MAX_PAYLOAD = 512
OVERHEAD = 8  # type, seq, len, crc
MAX_ENCODED = OVERHEAD + MAX_PAYLOAD + (OVERHEAD + MAX_PAYLOAD) // 254 + 1

INFO, SET_INPUT, INVOKE, GET_OUTPUT, GET_PROFILE, GET_TENSOR, PING, LAYER_INFO, STATS, STATUS = range(1, 11)
ERROR = 0x7F
REPLY = 0x80
NAMES = {
    INFO: "INFO",
    SET_INPUT: "SET_INPUT",
    INVOKE: "INVOKE",
    GET_OUTPUT: "GET_OUTPUT",
    GET_PROFILE: "GET_PROFILE",
    GET_TENSOR: "GET_TENSOR",
    PING: "PING",
    LAYER_INFO: "LAYER_INFO",
    STATS: "STATS",
    STATUS: "STATUS",
    ERROR: "ERROR",
}

ERR_UNKNOWN, ERR_BAD_LENGTH, ERR_RANGE, ERR_NOT_FRESH, ERR_OTHER, ERR_CORRUPT = range(1, 7)
ERROR_NAMES = {
    ERR_UNKNOWN: "unknown request",
    ERR_BAD_LENGTH: "bad length or arguments",
    ERR_RANGE: "out of range",
    ERR_NOT_FRESH: "no fresh input",
    ERR_OTHER: "device error",
    ERR_CORRUPT: "corrupt frame",
}

DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "uint8", 5: "int64"}
UNITS = {0: "instructions", 1: "cycles"}
STATS_NAMES = ("frames", "retransmits", "corrupt", "dropped", "invokes", "errors", "rx_bytes", "overlong")

#: data bytes per SET_INPUT chunk (the payload also carries index, 0 and the u32 offset)
INPUT_CHUNK = MAX_PAYLOAD - 6
#: ticks per GET_PROFILE reply
PROFILE_CHUNK = (MAX_PAYLOAD - 2) // 4


class FrameError(ValueError):
    """A received frame that does not decode or check (never acted upon)."""


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes

    @property
    def name(self) -> str:
        return NAMES.get(self.type & ~REPLY if self.type != ERROR else ERROR, f"0x{self.type:02x}")


def raw_frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """The frame before COBS: type, seq, len, payload, CRC."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BBH", type_ & 0xFF, seq & 0xFF, len(payload)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def encode_frame(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """COBS-encoded frame followed by its 0x00 delimiter."""
    return cobs.encode(raw_frame(type_, seq, payload)) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame (without its delimiter); raise FrameError when it does not check."""
    try:
        raw = cobs.decode(bytes(encoded))
    except cobs.DecodeError as exc:
        raise FrameError(f"not COBS ({exc})") from None
    if len(raw) < OVERHEAD:
        raise FrameError(f"frame of {len(raw)} bytes is too short")
    type_, seq, length = struct.unpack_from("<BBH", raw)
    if length != len(raw) - OVERHEAD or length > MAX_PAYLOAD:
        raise FrameError(f"length field {length} disagrees with the frame size {len(raw)}")
    (crc,) = struct.unpack_from("<I", raw, len(raw) - 4)
    if crc != zlib.crc32(raw[:-4]):
        raise FrameError("CRC mismatch")
    return Frame(type_, seq, raw[4:-4])


class FrameReader:
    """Split a byte stream into encoded frames at 0x00; bounded (an overlong run is dropped)."""

    def __init__(self, limit: int = MAX_ENCODED + 16):
        self.limit = limit
        self._buf = bytearray()
        self._overflow = False
        self.dropped = 0  # overlong runs discarded

    def feed(self, data: bytes) -> list[bytes]:
        """Return the complete encoded frames (possibly invalid) found so far."""
        out = []
        start = 0
        data = bytes(data)
        while True:
            z = data.find(b"\x00", start)
            piece = data[start:] if z < 0 else data[start:z]
            if not self._overflow:
                if len(self._buf) + len(piece) > self.limit:
                    self._overflow = True
                    self._buf.clear()
                else:
                    self._buf += piece
            if z < 0:
                return out
            if self._overflow:
                self.dropped += 1
            elif self._buf:
                out.append(bytes(self._buf))
            self._buf.clear()
            self._overflow = False
            start = z + 1

    def reset(self) -> None:
        self._buf.clear()
        self._overflow = False


# ---- payloads ---------------------------------------------------------------------------


@dataclass
class IOInfo:
    dtype: str
    shape: tuple
    bytes: int
    scale: float
    zero_point: int


@dataclass
class DeviceInfo:
    version: int
    unit: str  # "instructions" | "cycles"
    layers: int
    model_hash: int
    arena_bytes: int
    clock_hz: int
    unit_per_tick: float  # INFO's unit-per-tick x 1000, divided by 1000
    max_payload: int
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    name: str = ""

    @property
    def hash_hex(self) -> str:
        return f"{self.model_hash:08x}"


def parse_info(p: bytes) -> DeviceInfo:
    try:
        version, unit, layers, mhash, arena, clock, uptk, maxp, n_in, n_out = struct.unpack_from("<BBHIIIIHBB", p)
        off = struct.calcsize("<BBHIIIIHBB")
        ios = []
        for _ in range(n_in + n_out):
            dt, rank = struct.unpack_from("<BB", p, off)
            off += 2
            dims = struct.unpack_from(f"<{rank}i", p, off)
            off += 4 * rank
            nbytes, scale, zp = struct.unpack_from("<Ifi", p, off)
            off += 12
            ios.append(IOInfo(DTYPES.get(dt, f"dtype{dt}"), tuple(dims), nbytes, scale, zp))
        nlen = p[off]
        name = p[off + 1 : off + 1 + nlen].decode("ascii", "replace")
        if len(p) < off + 1 + nlen:
            raise struct.error("name cut short")
    except (struct.error, IndexError) as exc:
        raise FrameError(f"malformed INFO reply ({exc})") from None
    return DeviceInfo(
        version,
        UNITS.get(unit, f"unit{unit}"),
        layers,
        mhash,
        arena,
        clock,
        uptk / 1000.0,
        maxp,
        ios[:n_in],
        ios[n_in:],
        name,
    )


def set_input_payload(index: int, offset: int, data: bytes) -> bytes:
    return struct.pack("<BBI", index, 0, offset) + bytes(data)


def invoke_payload(first: int = 0, last: int | None = None) -> bytes:
    return struct.pack("<HH", first, 0xFFFF if last is None else last)


def get_output_payload(index: int, offset: int, length: int) -> bytes:
    return struct.pack("<BBIH", index, 0, offset, length)


def get_profile_payload(first: int, count: int) -> bytes:
    return struct.pack("<HH", first, count)


def get_tensor_payload(layer: int, offset: int, length: int) -> bytes:
    return struct.pack("<HIH", layer, offset, length)


def layer_info_payload(layer: int) -> bytes:
    return struct.pack("<H", layer)


def parse_invoke(p: bytes) -> tuple[int, int]:
    """(total ticks, layers run)"""
    return struct.unpack("<IH", p)


def parse_profile(p: bytes) -> list[int]:
    (count,) = struct.unpack_from("<H", p)
    if len(p) != 2 + 4 * count:
        raise FrameError("malformed GET_PROFILE reply")
    return list(struct.unpack_from(f"<{count}I", p, 2))


def parse_layer_info(p: bytes) -> dict:
    try:
        index, macs, out_offset, out_bytes = struct.unpack_from("<HIII", p)
        off = 14
        op = p[off + 1 : off + 1 + p[off]].decode("ascii", "replace")
        off += 1 + p[off]
        name = p[off + 1 : off + 1 + p[off]].decode("ascii", "replace")
    except (struct.error, IndexError) as exc:
        raise FrameError(f"malformed LAYER_INFO reply ({exc})") from None
    return {"index": index, "name": name, "op": op, "macs": macs, "arena_offset": out_offset, "bytes": out_bytes}


def parse_stats(p: bytes) -> dict:
    n = p[0] if p else 0
    values = struct.unpack_from(f"<{n}I", p, 1)
    return {STATS_NAMES[i] if i < len(STATS_NAMES) else f"stat{i}": v for i, v in enumerate(values)}


@dataclass
class DeviceStatus:
    """STATUS reply: what the device holds now (lets the host resume an input and learn whether
    an INVOKE whose reply it lost was run)."""

    invokes: int  # INVOKEs executed since boot
    invoked: bool  # an INVOKE ran since boot (then the next three fields describe it)
    fresh: bool  # every input completely written since the last INVOKE
    outputs_valid: bool  # the last INVOKE ran the whole model and no SET_INPUT came since
    last_invoke_seq: int
    last_ticks: int
    last_layers: int
    received: list  # per input: contiguous bytes received since the last INVOKE


def parse_status(p: bytes) -> DeviceStatus:
    try:
        invokes, flags, seq, ticks, ran, n = struct.unpack_from("<IBBIHB", p)
        received = list(struct.unpack_from(f"<{n}I", p, struct.calcsize("<IBBIHB")))
    except struct.error as exc:
        raise FrameError(f"malformed STATUS reply ({exc})") from None
    return DeviceStatus(invokes, bool(flags & 1), bool(flags & 2), bool(flags & 4), seq, ticks, ran, received)


def parse_error(p: bytes) -> tuple[int, int, str]:
    """(error code, request type, message)"""
    code = p[0] if len(p) > 0 else 0
    req = p[1] if len(p) > 1 else 0
    return code, req, p[2:].decode("ascii", "replace")
