"""ZeroMQ stream schema v1 (docs/formats.md#zeromq-stream-schema-v1): the single definition used by
publisher, viewer and tests.

Frame message, 3 parts: ``b"frame"``, msgpack header, raw pixel bytes (C order, little endian).
Stats message, 2 parts: ``b"stats"``, msgpack map of throughput and health (about once a second).

A subscriber calls `decode(parts)` on every message; anything that does not fit raises `SchemaError`,
which it counts and skips. Unknown extra header keys are allowed (forward compatible); a different
version is not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence, Union

import msgpack
import numpy as np

from .errors import SsmlError

VERSION = 1
TOPIC_FRAME = b"frame"
TOPIC_STATS = b"stats"
DTYPES: dict[str, np.dtype] = {"u1": np.dtype("u1"), "f4": np.dtype("<f4"), "f2": np.dtype("<f2")}
MAX_DIM = 8192                 # bound on each of h, w: a corrupt header cannot ask for absurd sizes
MAX_HEADER_BYTES = 64 * 1024   # headers are ~200 bytes; refuse to parse anything much larger
MAX_STATS_BYTES = 1024 * 1024
MAX_INT = 2**63 - 1            # integer header values fit int64 (nanosecond clocks until the year 2262)
MAX_MODEL_CHARS = 256
INT_KEYS = ("seq", "center", "first", "last", "capture_ns", "publish_ns", "dropped", "skipped")
HEADER_KEYS = ("v", *INT_KEYS, "shape", "dtype", "model")


class SchemaError(SsmlError, ValueError):
    """A message does not follow schema v1; subscribers count it and skip it."""


@dataclass(frozen=True)
class FrameHeader:
    seq: int            # output counter; a gap means frames this subscriber missed
    center: int         # spike-frame index of the window centre
    first: int          # first spike frame of the window
    last: int           # last spike frame of the window
    capture_ns: int     # wall clock (time.time_ns) when spike frame `last` was captured
    publish_ns: int     # wall clock when the message was sent
    shape: tuple[int, int]
    dtype: str          # "u1" display-ready, "f4"/"f2" firing rate (spikes per frame)
    model: str
    dropped: int = 0    # spike frames lost at ingest, cumulative
    skipped: int = 0    # windows not reconstructed, cumulative
    v: int = VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class Frame:
    header: FrameHeader
    image: np.ndarray   # h x w view of the payload (no copy); read-only when the payload is bytes


@dataclass(frozen=True)
class Stats:
    values: dict


Message = Union[Frame, Stats]


def payload_nbytes(shape: Sequence[int], dtype: str) -> int:
    return int(shape[0]) * int(shape[1]) * DTYPES[dtype].itemsize


def encode_frame(header: FrameHeader, image: np.ndarray) -> list:
    """[topic, header bytes, payload]; the payload is `image` itself (C-contiguous, no copy), so it can
    be sent with copy=False. Checks that image and header agree."""
    if header.dtype not in DTYPES:
        raise SchemaError(f"unknown dtype {header.dtype!r}; use one of {', '.join(DTYPES)}")
    want = DTYPES[header.dtype]
    if image.dtype != want or tuple(image.shape) != tuple(header.shape) or not image.flags.c_contiguous:
        raise SchemaError(f"image {image.dtype} {image.shape} does not match header "
                          f"{header.dtype} {tuple(header.shape)} (C-contiguous)")
    _check_header(header.to_dict())
    return [TOPIC_FRAME, msgpack.packb(header.to_dict()), image]


def encode_stats(values: dict) -> list:
    """[topic, msgpack map]; keys must be strings, values anything msgpack can hold."""
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise SchemaError("stats must be a dict with string keys")
    return [TOPIC_STATS, msgpack.packb({"v": VERSION, **values})]


def decode(parts: Sequence) -> Message:
    """Validate one multipart message (bytes or zmq.Frame parts) and return a Frame or Stats.
    Raises SchemaError for anything that does not follow schema v1, and nothing else."""
    if not isinstance(parts, Sequence) or not 2 <= len(parts) <= 3:
        raise SchemaError(f"expected 2 or 3 message parts, got {len(parts) if isinstance(parts, Sequence) else _show(parts)}")
    topic = bytes(_buffer(parts[0]))
    if topic == TOPIC_FRAME:
        if len(parts) != 3:
            raise SchemaError(f"frame message needs 3 parts, got {len(parts)}")
        return decode_frame(parts)
    if topic == TOPIC_STATS:
        if len(parts) != 2:
            raise SchemaError(f"stats message needs 2 parts, got {len(parts)}")
        values = _unpack_map(parts[1], MAX_STATS_BYTES, "stats")
        if not _is_version(values.get("v", VERSION)):
            raise SchemaError(f"stats version {_show(values.get('v'))}, expected {VERSION}")
        return Stats(values)
    raise SchemaError(f"unknown topic {topic[:32]!r}")


def _is_version(value) -> bool:
    return type(value) is int and value == VERSION


def _is_int(value, low: int = 0, high: int = MAX_INT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _show(value) -> str:
    """A bounded repr for error messages: a hostile header may hold 64 KB of anything."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_frame(parts: Sequence) -> Frame:
    raw = _unpack_map(parts[1], MAX_HEADER_BYTES, "header")
    _check_header(raw)
    h, w = raw["shape"]
    payload = _buffer(parts[2])
    expected = payload_nbytes((h, w), raw["dtype"])
    if payload.nbytes != expected:
        raise SchemaError(f"payload has {payload.nbytes} bytes, header says {h}x{w} {raw['dtype']} = {expected}")
    image = np.frombuffer(payload, dtype=DTYPES[raw["dtype"]]).reshape(h, w)
    fields = {k: raw[k] for k in HEADER_KEYS}
    fields["shape"] = (h, w)
    return Frame(FrameHeader(**fields), image)


def _check_header(raw: dict) -> None:
    missing = [k for k in HEADER_KEYS if k not in raw]
    if missing:
        raise SchemaError(f"header misses key(s) {', '.join(missing)}")
    if not _is_version(raw["v"]):
        raise SchemaError(f"schema version {_show(raw['v'])}, this subscriber reads version {VERSION}")
    for key in INT_KEYS:
        if not _is_int(raw[key]):
            raise SchemaError(f"header {key} must be an integer in 0..2**63-1, got {_show(raw[key])}")
    shape = raw["shape"]
    if not isinstance(shape, (list, tuple)) or len(shape) != 2 or not all(_is_int(d, 1, MAX_DIM) for d in shape):
        raise SchemaError(f"header shape must be [h, w] integers in 1..{MAX_DIM}, got {_show(shape)}")
    if not isinstance(raw["dtype"], str) or raw["dtype"] not in DTYPES:
        raise SchemaError(f"unknown dtype {_show(raw['dtype'])}; expected one of {', '.join(DTYPES)}")
    if not isinstance(raw["model"], str) or len(raw["model"]) > MAX_MODEL_CHARS:
        raise SchemaError(f"header model must be a string of at most {MAX_MODEL_CHARS} characters, "
                          f"got {_show(raw['model'])}")


def _unpack_map(part, limit: int, what: str) -> dict:
    buf = _buffer(part)
    if buf.nbytes > limit:
        raise SchemaError(f"{what} of {buf.nbytes} bytes exceeds {limit}")
    try:
        value = msgpack.unpackb(buf, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise SchemaError(f"{what} is not valid msgpack ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise SchemaError(f"{what} must be a msgpack map, got {type(value).__name__}")
    return value


def _buffer(part) -> memoryview:
    """bytes, bytearray, numpy array or zmq.Frame -> flat byte memoryview (no copy)."""
    try:
        mv = memoryview(part.buffer if hasattr(part, "buffer") else part)
        return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")
    except (TypeError, ValueError):  # not a buffer, or not a contiguous one
        raise SchemaError(f"message part is not a contiguous byte buffer: {type(part).__name__}") from None
