"""ZeroMQ PUB side of the stream (docs/formats.md#zeromq-stream-schema-v1): frames and stats, never
blocking the caller.

Slow or stuck subscribers cannot slow the pipeline: the PUB socket has a small send high-water mark
(per subscriber), and every send is non-blocking. When a subscriber's queue is full, ZeroMQ drops
whole messages for that subscriber only; it notices from `seq` gaps. Sends that ZeroMQ refuses
outright are counted in `refused`.

Zero copy: each message gets a fresh payload array that only that message owns, handed to ZeroMQ with
copy=False. ZeroMQ keeps a reference until the bytes are on the wire; the publisher never writes into
a buffer after handing it over, so nothing can change under ZeroMQ (the caller's `rate` array is not
sent as is, because the caller may reuse it for the next frame).

A Publisher is used from one thread (ZeroMQ sockets are not thread-safe).
"""
from __future__ import annotations

import errno
import os
import socket
import time
from typing import Sequence

import numpy as np
import zmq

from . import schema
from .display import DEFAULT_RATE_NORM, DisplayScale, rate_to_u1
from .errors import SsmlError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_SNDHWM = 4   # messages queued per subscriber before ZeroMQ drops for that subscriber
FORMATS = tuple(schema.DTYPES)


class PublishError(SsmlError):
    """An endpoint could not be bound, or the publisher was misconfigured."""


class Publisher:
    def __init__(self, endpoints: Sequence[str] | str | None = None, fmt: str = "u1",
                 rate_norm: float = DEFAULT_RATE_NORM, gamma: float = 1.0, hwm: int = DEFAULT_SNDHWM):
        if fmt not in FORMATS:
            raise PublishError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if not isinstance(hwm, int) or hwm < 1:
            raise PublishError(f"send high-water mark must be a positive integer, got {hwm!r}")
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        endpoints = list(endpoints or [DEFAULT_ENDPOINT])
        self.fmt = fmt
        try:
            self.scale = DisplayScale(rate_norm=rate_norm, gamma=gamma)
        except SsmlError as e:
            raise PublishError(str(e)) from None
        self.sent_frames = 0
        self.sent_stats = 0
        self.refused = 0     # sends ZeroMQ did not accept (counted, never waited for)
        self._ipc_paths: list[str] = []  # socket files this publisher created (removed at close)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.endpoints: list[str] = []   # as bound (a `*` port resolved to the real one)
        try:
            for endpoint in endpoints:
                self.endpoints.append(self._bind(endpoint))
        except BaseException:
            self.close()
            raise

    def _bind(self, endpoint: str) -> str:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise PublishError(f"malformed endpoint {endpoint!r}; use tcp://HOST:PORT or ipc:///PATH")
        if endpoint.startswith("ipc://") and _ipc_in_use(endpoint[len("ipc://"):]):
            raise PublishError(f"endpoint {endpoint} is already in use by another publisher; "
                               "stop it or pick another path")
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as e:
            if e.errno == errno.EADDRINUSE:
                raise PublishError(f"endpoint {endpoint} is already in use (another ssml-stream?); "
                                   "stop it or pick another port with --publish") from None
            if e.errno == errno.ENOENT:
                raise PublishError(f"cannot bind {endpoint}: its directory does not exist") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise PublishError(f"cannot bind {endpoint}: no such local address") from None
            raise PublishError(f"cannot bind {endpoint!r} ({zmq.strerror(e.errno)}); "
                               "use tcp://HOST:PORT, tcp://HOST:* or ipc:///PATH") from None
        if endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):
            self._ipc_paths.append(endpoint[len("ipc://"):])
        return self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def send_frame(self, rate: np.ndarray, *, seq: int, center: int, first: int, last: int,
                   capture_ns: int, model: str, dropped: int = 0, skipped: int = 0) -> bool:
        """Publish one reconstructed frame (H x W firing rate). Returns False if ZeroMQ refused it."""
        if rate.ndim != 2:
            raise PublishError(f"frame must be H x W, got shape {rate.shape}")
        if self.fmt == "u1":
            payload = rate_to_u1(rate, self.scale)
        else:
            payload = np.empty(rate.shape, schema.DTYPES[self.fmt])   # owned by this message only
            np.copyto(payload, rate, casting="unsafe")
        header = schema.FrameHeader(
            seq=int(seq), center=int(center), first=int(first), last=int(last),
            capture_ns=int(capture_ns), publish_ns=time.time_ns(), shape=payload.shape, dtype=self.fmt,
            model=str(model), dropped=int(dropped), skipped=int(skipped))
        if self._send(schema.encode_frame(header, payload)):
            self.sent_frames += 1
            return True
        return False

    def send_stats(self, values: dict) -> bool:
        """Publish a stats map (throughput and health); about once a second is plenty."""
        if self._send(schema.encode_stats(values)):
            self.sent_stats += 1
            return True
        return False

    def _send(self, parts: list) -> bool:
        try:
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            self.refused += 1
            return False

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(linger=0)
        if not self._ctx.closed:
            self._ctx.term()
        while self._ipc_paths:            # ZeroMQ leaves ipc socket files behind
            try:
                os.unlink(self._ipc_paths.pop())
            except OSError:
                pass

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ipc_in_use(path: str) -> bool:
    """ZeroMQ silently takes over an ipc:// path that another process listens on; check first."""
    if not path or path.startswith("@") or not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.2)
        probe.connect(path)
        return True
    except OSError:
        return False   # stale file left by a crashed publisher: binding replaces it
    finally:
        probe.close()
