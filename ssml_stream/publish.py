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

Network safety (docs/reliability.md): endpoints are checked before anything is bound (tcp ports
0..65535, `*` or 0 = any free port; ipc paths that exist must be sockets nobody listens on, so a regular
file is never replaced); with `curve_keys` (see `ssml_stream.keys`) every connection is encrypted and only
viewers whose public key is authorised receive anything; without it, a tcp endpoint that other hosts can
reach gets a one-line warning.

A Publisher is used from one thread (ZeroMQ sockets are not thread-safe).
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import sys
import time
from typing import Callable, Sequence

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from . import schema
from .display import DEFAULT_RATE_NORM, DisplayScale, rate_to_u1
from .errors import SsmlError
from .keys import ServerKeys, load_server_keys

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_SNDHWM = 4   # messages queued per subscriber before ZeroMQ drops for that subscriber
FORMATS = tuple(schema.DTYPES)
ZAP_DOMAIN = "ssml-stream"
ENDPOINT_HELP = "use tcp://HOST:PORT (PORT 1..65535, or * for any free port) or ipc:///PATH"


class PublishError(SsmlError):
    """An endpoint could not be bound, or the publisher was misconfigured."""


class Publisher:
    def __init__(self, endpoints: Sequence[str] | str | None = None, fmt: str = "u1",
                 rate_norm: float = DEFAULT_RATE_NORM, gamma: float = 1.0, hwm: int = DEFAULT_SNDHWM,
                 curve_keys: str | os.PathLike | None = None, log: Callable[[str], None] | None = None):
        """Bind every endpoint now (errors are one-line PublishError/CurveKeyError). `curve_keys`: a key
        folder (`ssml_stream.keys`) to encrypt and admit only authorised viewers. `log` receives the
        warning about unencrypted endpoints other hosts can reach (default: stderr)."""
        if fmt not in FORMATS:
            raise PublishError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        if not isinstance(hwm, int) or hwm < 1:
            raise PublishError(f"send high-water mark must be a positive integer, got {hwm!r}")
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        endpoints = list(endpoints or [DEFAULT_ENDPOINT])
        for endpoint in endpoints:
            check_endpoint(endpoint)
        keys = load_server_keys(curve_keys) if curve_keys is not None else None
        self.fmt = fmt
        try:
            self.scale = DisplayScale(rate_norm=rate_norm, gamma=gamma)
        except SsmlError as e:
            raise PublishError(str(e)) from None
        self.encrypted = keys is not None
        self.sent_frames = 0
        self.sent_stats = 0
        self.refused = 0     # sends ZeroMQ did not accept (counted, never waited for)
        self._ipc_files: list[tuple[str, tuple[int, int] | None]] = []  # socket files bound here (removed at close)
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self.endpoints: list[str] = []   # as bound (a `*` port resolved to the real one)
        try:
            if keys is not None:
                self._enable_curve(keys)
            for endpoint in endpoints:
                self.endpoints.append(self._bind(endpoint))
        except BaseException:
            self.close()
            raise
        exposed = [e for e in self.endpoints if not is_loopback(e)]
        if exposed and not self.encrypted:
            (log or _to_stderr)(f"warning: publishing unencrypted on {', '.join(exposed)}, which other hosts can "
                                "reach: anyone there can watch (CURVE keys encrypt and admit only authorised viewers)")

    def _enable_curve(self, keys: ServerKeys) -> None:
        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        self._auth.configure_curve(domain=ZAP_DOMAIN, location=keys.clients_dir)
        self._sock.curve_secretkey = keys.secret
        self._sock.curve_publickey = keys.public
        self._sock.curve_server = True
        self._sock.zap_domain = ZAP_DOMAIN.encode()
        # Fail closed: without a running authenticator ZeroMQ would admit any client; this makes it admit none.
        self._sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)

    def _bind(self, endpoint: str) -> str:
        ipc_path = endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None
        if ipc_path is not None and ipc_path.startswith("@"):
            ipc_path = None    # Linux abstract name: no file
        if ipc_path is not None:
            _check_ipc_path(endpoint, ipc_path)
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as e:
            if e.errno == errno.EADDRINUSE:
                raise PublishError(f"endpoint {endpoint} is already in use (another ssml-stream?); "
                                   "stop it or pick another endpoint") from None
            if e.errno == errno.ENOENT:
                raise PublishError(f"cannot bind {endpoint}: its directory does not exist") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise PublishError(f"cannot bind {endpoint}: no such local address") from None
            if e.errno == errno.EACCES:
                raise PublishError(f"cannot bind {endpoint}: permission denied (ports below 1024 need "
                                   "privileges; an ipc path needs a writable folder)") from None
            raise PublishError(f"cannot bind {endpoint!r} ({zmq.strerror(e.errno)}); {ENDPOINT_HELP}") from None
        if ipc_path is not None:
            self._ipc_files.append((ipc_path, _socket_identity(ipc_path)))
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
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if not self._ctx.closed:
            self._ctx.term()
        while self._ipc_files:            # ZeroMQ leaves ipc socket files behind
            path, identity = self._ipc_files.pop()
            # only the socket bound here: not whatever another program may have put at that path since
            if identity is not None and _socket_identity(path) == identity:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint before anything is bound: only tcp and ipc, and a tcp port in 0..65535
    (ZeroMQ silently wraps larger ones); `*` or 0 asks for any free port."""
    scheme, sep, rest = endpoint.partition("://") if isinstance(endpoint, str) else ("", "", "")
    if sep and rest and scheme == "ipc":
        return
    if not (sep and scheme == "tcp"):
        raise PublishError(f"malformed endpoint {endpoint!r}; {ENDPOINT_HELP}")
    host, colon, port = rest.rpartition(":")
    if not (colon and host) or port.endswith("]"):
        raise PublishError(f"endpoint {endpoint!r} needs a host and a port; {ENDPOINT_HELP}")
    if port != "*" and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise PublishError(f"port {port!r} of {endpoint} is out of range; {ENDPOINT_HELP}")


def is_loopback(endpoint: str) -> bool:
    """Whether only this machine can connect: ipc, or tcp bound to a loopback address (give the endpoint
    as bound, LAST_ENDPOINT, whose host is numeric; a name or `*` counts as reachable from elsewhere)."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://"):].rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _socket_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the Unix socket at path; None when there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None


def _check_ipc_path(endpoint: str, path: str) -> None:
    """ZeroMQ unlinks whatever is at an ipc path before it binds: allow that only for a stale socket."""
    if not os.path.lexists(path):
        return
    if _socket_identity(path) is None:
        raise PublishError(f"cannot bind {endpoint}: {path} exists and is not a socket; not replacing it")
    if _ipc_in_use(path):
        raise PublishError(f"endpoint {endpoint} is already in use by another publisher; "
                           "stop it or pick another path")


def _ipc_in_use(path: str) -> bool:
    """ZeroMQ silently takes over an ipc:// path that another process listens on; check first."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.2)
        probe.connect(path)
        return True
    except OSError:
        return False   # stale socket left by a crashed publisher: binding replaces it
    finally:
        probe.close()
