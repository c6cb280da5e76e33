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


# ---- fuzzing: any message decodes to a Frame/Stats or raises SchemaError, nothing else

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None)
MSGPACK_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
                   | st.text(max_size=20) | st.binary(max_size=20))
MSGPACK_VALUES = st.recursive(MSGPACK_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.integers(-5, 5) | st.binary(max_size=4) | st.none(), inner, max_size=4), max_leaves=12)
HEADER_VALUES = MSGPACK_VALUES | st.sampled_from([2**63, 2**64 - 1, -1, 1.0, True, [3, 5], ["u1"], {"f4": 1}])


def decode_or_schema_error(parts):
    try:
        msg = schema.decode(parts)
    except schema.SchemaError as e:
        assert "\n" not in str(e) and len(str(e)) < 300
        return e
    assert isinstance(msg, (schema.Frame, schema.Stats))
    if isinstance(msg, schema.Frame):
        h = msg.header
        assert msg.image.shape == h.shape and msg.image.dtype == schema.DTYPES[h.dtype]
        assert all(0 <= getattr(h, k) <= schema.MAX_INT for k in schema.INT_KEYS)
    return msg


@FUZZ
@given(st.lists(st.binary(max_size=64) | st.sampled_from([b"frame", b"stats"]), max_size=5))
def test_fuzz_random_parts(parts):
    decode_or_schema_error(parts)


@FUZZ
@given(topic=st.sampled_from([b"frame", b"stats"]), value=MSGPACK_VALUES, payload=st.binary(max_size=64))
def test_fuzz_random_msgpack(topic, value, payload):
    header = msgpack.packb(value)
    decode_or_schema_error([topic, header, payload] if topic == b"frame" else [topic, header])


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(schema.HEADER_KEYS), HEADER_VALUES | st.just(KeyError), max_size=4),
       extra=st.dictionaries(st.text(max_size=8), MSGPACK_VALUES, max_size=2), exact_payload=st.booleans())
def test_fuzz_mutated_headers(changes, extra, exact_payload):
    parts = _with_header(**changes, **{k: v for k, v in extra.items() if k not in schema.HEADER_KEYS})
    if not exact_payload:
        parts[2] = parts[2][:-1]
    msg = decode_or_schema_error(parts)
    if changes and any(v is KeyError for v in changes.values()):
        assert isinstance(msg, schema.SchemaError)


@pytest.mark.parametrize("value", [[1], {"a": 1}, 1.5, None, b"u1"])
def test_unhashable_or_odd_dtype_is_a_schema_error(value):
    with pytest.raises(schema.SchemaError, match="dtype"):
        schema.decode(_with_header(dtype=value))


@pytest.mark.parametrize("key", ["seq", "capture_ns", "publish_ns"])
def test_integers_beyond_int64_are_schema_errors(key):
    with pytest.raises(schema.SchemaError, match=key):
        schema.decode(_with_header(**{key: 2**64 - 1}))
    assert getattr(schema.decode(_with_header(**{key: 2**63 - 1})).header, key) == 2**63 - 1


def test_non_buffer_parts_are_schema_errors():
    for parts in ([b"frame", 3, b""], [b"stats", "text"], None, 7, [object(), b""]):
        with pytest.raises(schema.SchemaError):
            schema.decode(parts)


def test_viewer_latency_ignores_bogus_capture_times(tmp_path):
    import time

    from ssml_stream.viewer import Viewer, ViewerConfig

    viewer = Viewer(ViewerConfig(connect=[f"ipc://{tmp_path}/none.ipc"], headless=True))
    try:
        for capture_ns in (2**63 - 1, 0, time.time_ns() - 5_000_000):
            viewer.show(schema.decode(_with_header(capture_ns=capture_ns)), time.monotonic())
        assert len(viewer.latencies_ms) == 1 and 4 <= viewer.latencies_ms[0] < 3_600_000
        assert "latency p50" in viewer.summary(1.0)
    finally:
        viewer.sub.close()
