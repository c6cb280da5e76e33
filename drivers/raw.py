"""Raw packed frames from a device node, a FIFO, a TCP socket or stdin: `.dat` frames without a file
around them (docs/formats.md#dat-spike-files).

For a camera SDK or capture program that writes frames to a pipe or socket. Reads are assembled
into whole frames (short reads are normal), stamped with the wall clock at arrival, and written to a
live ring. Every wait is a poll with a short timeout, so `stop` is honoured within ~0.1 s and a silent
source never hangs the pipeline. The end of the stream is a clean return with `end_reason` set; a
stream that ends inside a frame, a reset connection or an unreadable source raises DriverError.
"""
from __future__ import annotations

import os
import select
import socket
import stat
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from ..errors import ConfigError, DriverError
from ..formats import FrameGeometry
from ..ring import RingClosed
from .base import Driver, DriverOptions, SourceInfo, check_ring

POLL_S = 0.1
READ_FRAMES = 64          # read up to this many frames per system call
CONNECT_TIMEOUT_S = 5.0


class _FdSource:
    """A readable file descriptor (stdin, FIFO, device node) polled for data."""

    def __init__(self, fd: int, name: str, owns_fd: bool):
        self.fd, self.name, self.owns_fd = fd, name, owns_fd
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN | select.POLLPRI)

    def wait_readable(self, timeout_s: float) -> bool:
        return bool(self.poller.poll(timeout_s * 1000))

    def read_into(self, view: memoryview) -> int:
        """Bytes read; 0 at end of stream; -1 if nothing is available right now."""
        try:
            return os.readv(self.fd, [view])
        except BlockingIOError:
            return -1
        except OSError as e:
            raise DriverError(f"{self.name}: read failed: {e.strerror or e}") from None

    def close(self) -> None:
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class _SocketSource:
    def __init__(self, sock: socket.socket, name: str):
        self.sock, self.name = sock, name
        sock.settimeout(POLL_S)

    def wait_readable(self, timeout_s: float) -> bool:
        return bool(select.select([self.sock], [], [], timeout_s)[0])

    def read_into(self, view: memoryview) -> int:
        try:
            return self.sock.recv_into(view)
        except (BlockingIOError, socket.timeout):
            return -1
        except OSError as e:
            raise DriverError(f"{self.name}: connection lost: {e.strerror or e}") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _open_path(path: str, name: str) -> _FdSource:
    if not os.path.exists(path):
        raise DriverError(f"{name}: no such file or device")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise DriverError(f"{name}: cannot open: {e.strerror or e}") from None
    return _FdSource(fd, name, owns_fd=True)


def _connect_tcp(uri: str, timeout_s: float) -> _SocketSource:
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ConfigError(f"{uri}: expected tcp://HOST:PORT")
    try:
        sock = socket.create_connection((parts.hostname, port), timeout=timeout_s)
    except OSError as e:
        raise DriverError(f"{uri}: cannot connect: {e.strerror or e}; is the sender listening?") from None
    return _SocketSource(sock, uri)


class RawStream(Driver):
    """Packed frames from `-` (stdin), `fifo:PATH`, `/dev/NODE` or `tcp://HOST:PORT` (client)."""

    def __init__(self, uri: str, options: DriverOptions | None = None):
        options = options or DriverOptions()
        self.options = options
        self.uri = uri
        geometry = FrameGeometry(options.height, options.width, options.stored_width)
        self.frame_bytes = geometry.frame_bytes
        self.frames_out = 0
        self.end_reason = ""
        if uri == "-":
            self.source = _FdSource(0, "stdin", owns_fd=False)
        elif uri.startswith("tcp://"):
            timeout = float(options.extra.get("connect_timeout_s", CONNECT_TIMEOUT_S))
            self.source = _connect_tcp(uri, timeout)
        else:
            path = uri[5:] if uri.startswith("fifo:") else uri
            if uri.startswith("fifo:") and os.path.exists(path) and not stat.S_ISFIFO(os.stat(path).st_mode):
                raise DriverError(f"{uri}: {path} is not a FIFO (create one with mkfifo)")
            self.source = _open_path(path, uri)
        self.info = SourceInfo(name=uri if uri != "-" else "stdin", height=options.height, width=options.width,
                               rate_hz=float(options.rate_hz), live=True, frame_bytes=self.frame_bytes,
                               stored_width=geometry.stored_width)

    def run(self, ring, stop: threading.Event) -> None:
        check_ring(self, ring)
        fb = self.frame_bytes
        max_frames = self.options.max_frames
        buf = np.empty((READ_FRAMES, fb), np.uint8)
        flat = memoryview(buf.reshape(-1))
        filled = 0  # bytes in buf
        try:
            while not stop.is_set():
                if max_frames is not None and self.frames_out >= max_frames:
                    self.end_reason = f"{self.info.name}: stopped after {self.frames_out} frames (--duration)"
                    return
                if not self.source.wait_readable(POLL_S):
                    continue
                got = self.source.read_into(flat[filled:])
                if got < 0:
                    continue
                if got == 0:
                    self._end_of_stream(filled)
                    return
                arrival_ns = time.time_ns()
                filled += got
                whole = filled // fb
                if max_frames is not None:
                    whole = min(whole, max_frames - self.frames_out)
                if whole:
                    ring.write(buf[:whole], arrival_ns)
                    self.frames_out += whole
                    rest = filled - whole * fb
                    if rest:
                        flat[:rest] = flat[whole * fb:filled]
                    filled = rest
        except RingClosed:
            self.end_reason = f"{self.info.name}: ring closed after {self.frames_out} frames"

    def _end_of_stream(self, partial_bytes: int) -> None:
        if partial_bytes and not self.options.allow_truncated:
            raise DriverError(f"{self.info.name}: stream ended inside a frame ({partial_bytes} of {self.frame_bytes} "
                              f"bytes) after {self.frames_out} whole frames; check --height/--width, or pass "
                              "--allow-truncated")
        extra = f" (ignored a partial frame of {partial_bytes} bytes)" if partial_bytes else ""
        self.end_reason = f"{self.info.name}: end of stream after {self.frames_out} frames{extra}"

    def close(self) -> None:
        self.source.close()


def open_raw(uri: str, options: DriverOptions) -> RawStream:
    return RawStream(uri, options)
