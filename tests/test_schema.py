"""ZeroMQ schema v1 (docs/formats.md#zeromq-stream-schema-v1): round trips and every kind of malformed message."""
import msgpack
import numpy as np
import pytest

from ssml_stream import schema
from ssml_stream.display import DisplayScale, rate_to_u1, to_display, u1_lut


def make_header(**over):
    fields = dict(seq=7, center=120, first=100, last=140, capture_ns=1_700_000_000_000_000_000,
                  publish_ns=1_700_000_000_001_000_000, shape=(3, 5), dtype="f4", model="tfp", dropped=2, skipped=4)
    fields.update(over)
    return schema.FrameHeader(**fields)


def frame_parts(dtype="f4", shape=(3, 5), **over):
    image = np.arange(shape[0] * shape[1], dtype=schema.DTYPES[dtype]).reshape(shape)
    return schema.encode_frame(make_header(dtype=dtype, shape=shape, **over), image), image


def as_bytes(parts):
    return [bytes(memoryview(p).cast("B")) if isinstance(p, np.ndarray) else p for p in parts]


@pytest.mark.parametrize("dtype", ["u1", "f4", "f2"])
def test_frame_round_trip(dtype):
    parts, image = frame_parts(dtype)
    assert parts[0] == b"frame" and len(parts) == 3
    msg = schema.decode(as_bytes(parts))
    assert isinstance(msg, schema.Frame)
    assert msg.header == make_header(dtype=dtype)
    assert msg.image.dtype == schema.DTYPES[dtype] and msg.image.shape == (3, 5)
    np.testing.assert_array_equal(msg.image, image)
    assert not msg.image.flags.owndata  # a view of the payload, not a copy


def test_decoded_image_is_a_view_of_the_payload_buffer():
    parts, _ = frame_parts("u1")
    payload = bytearray(as_bytes(parts)[2])
    msg = schema.decode([parts[0], parts[1], payload])
    payload[0] = 99
    assert msg.image[0, 0] == 99


def test_header_keys_on_the_wire_are_exactly_the_guide_keys():
    parts, _ = frame_parts()
    raw = msgpack.unpackb(parts[1])
    assert set(raw) == {"v", "seq", "center", "first", "last", "capture_ns", "publish_ns", "shape", "dtype",
                        "model", "dropped", "skipped"}
    assert raw["v"] == 1 and raw["shape"] == [3, 5]


def test_stats_round_trip():
    parts = schema.encode_stats({"fps": 31.5, "dropped": 0, "latency_ms_p99": 40.0})
    assert parts[0] == b"stats" and len(parts) == 2
    msg = schema.decode(parts)
    assert isinstance(msg, schema.Stats)
    assert msg.values["fps"] == 31.5 and msg.values["v"] == 1


def test_unknown_extra_header_keys_are_accepted():
    parts, _ = frame_parts()
    raw = msgpack.unpackb(parts[1])
    raw["future_key"] = "x"
    msg = schema.decode([parts[0], msgpack.packb(raw), as_bytes(parts)[2]])
    assert msg.header.seq == 7


def _with_header(**changes):
    parts, _ = frame_parts()
    raw = msgpack.unpackb(parts[1])
    for key, value in changes.items():
        if value is KeyError:
            del raw[key]
        else:
            raw[key] = value
    return [parts[0], msgpack.packb(raw), as_bytes(parts)[2]]


GOOD_FRAME = as_bytes(frame_parts()[0])
MALFORMED = {
    "wrong version": _with_header(v=2),
    "version as bool": _with_header(v=True),
    "short payload": GOOD_FRAME[:2] + [GOOD_FRAME[2][:-1]],
    "long payload": GOOD_FRAME[:2] + [GOOD_FRAME[2] + b"\0"],
    "absurd shape": _with_header(shape=[100_000, 100_000]),
    "zero shape": _with_header(shape=[0, 5]),
    "3-d shape": _with_header(shape=[3, 5, 1]),
    "float shape": _with_header(shape=[3.0, 5.0]),
    "unknown dtype": _with_header(dtype="f8"),
    "missing key": _with_header(seq=KeyError),
    "negative seq": _with_header(seq=-1),
    "string capture_ns": _with_header(capture_ns="now"),
    "model not a string": _with_header(model=3),
    "non-msgpack header": [b"frame", b"\xc1\xc1not msgpack", GOOD_FRAME[2]],
    "truncated msgpack header": [b"frame", GOOD_FRAME[1][:-3], GOOD_FRAME[2]],
    "header not a map": [b"frame", msgpack.packb([1, 2, 3]), GOOD_FRAME[2]],
    "huge header": [b"frame", msgpack.packb({"x": "y" * 100_000}), GOOD_FRAME[2]],
    "one part": [b"frame"],
    "two-part frame": GOOD_FRAME[:2],
    "four parts": GOOD_FRAME + [b"extra"],
    "three-part stats": [b"stats", msgpack.packb({"fps": 1.0}), b"extra"],
    "stats not a map": [b"stats", msgpack.packb(3)],
    "stats wrong version": [b"stats", msgpack.packb({"v": 9})],
    "unknown topic": [b"video", GOOD_FRAME[1], GOOD_FRAME[2]],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_message_raises_schema_error(case):
    with pytest.raises(schema.SchemaError):
        schema.decode(MALFORMED[case])


def test_good_frame_still_decodes_after_malformed_ones():
    errors = 0
    for parts in MALFORMED.values():
        try:
            schema.decode(parts)
        except schema.SchemaError:
            errors += 1
    assert errors == len(MALFORMED)
    assert schema.decode(GOOD_FRAME).header.seq == 7


def test_encode_refuses_image_that_disagrees_with_header():
    with pytest.raises(schema.SchemaError):
        schema.encode_frame(make_header(dtype="u1"), np.zeros((3, 5), np.float32))
    with pytest.raises(schema.SchemaError):
        schema.encode_frame(make_header(shape=(5, 3)), np.zeros((3, 5), np.float32))
    with pytest.raises(schema.SchemaError):
        schema.encode_frame(make_header(shape=(3, 5)), np.zeros((5, 3), np.float32).T)


# ---- display scaling (ssml_stream/display.py)

def test_rate_to_u1_divides_by_rate_norm_and_clips():
    rate = np.array([[0.0, 0.3, 0.6, 0.9, -0.1, np.nan]], np.float32)
    np.testing.assert_array_equal(rate_to_u1(rate), [[0, 128, 255, 255, 0, 0]])
    np.testing.assert_array_equal(rate_to_u1(rate, DisplayScale(rate_norm=1.2)), [[0, 64, 128, 191, 0, 0]])


def test_gamma_brightens_darks_and_gain_scales():
    rate = np.array([[0.15]], np.float32)          # 0.25 of the norm
    assert rate_to_u1(rate, DisplayScale(gamma=2.0))[0, 0] == 128   # sqrt(0.25) = 0.5
    assert rate_to_u1(rate, DisplayScale(gain=2.0))[0, 0] == 128


def test_u1_shown_as_is_unless_gain_or_gamma_change():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert to_display(image) is image
    np.testing.assert_array_equal(u1_lut(), np.arange(256))
    brighter = to_display(image, DisplayScale(gain=2.0))
    assert brighter.flat[100] == 200 and brighter.flat[200] == 255


def test_display_scale_rejects_nonsense():
    from ssml_stream.errors import ConfigError
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError):
            DisplayScale(gamma=bad)
