"""Image and video files from displayed frames (8-bit gray or BGR), shared by `ssml-view` and the demo:
PNG snapshots, mp4 recordings and contact sheets."""
from __future__ import annotations

import cv2
import numpy as np

from .cli_common import check_output_path
from .errors import SsmlError


class MediaError(SsmlError):
    """An image or video file could not be written."""


def write_image(path, image: np.ndarray, what: str) -> None:
    """cv2.imwrite that raises a one-line error on failure; the suffix picks the format."""
    try:
        written = cv2.imwrite(str(path), image)
    except cv2.error:   # an unknown suffix raises instead of returning False
        written = False
    if not written:
        raise MediaError(f"cannot write {what} {path} (is the folder writable and the suffix an image type?)")


class Recorder:
    """mp4 (mp4v) writer whose size is fixed by the first frame; later frames of another size are resized."""

    def __init__(self, path: str, fps: float):
        self.path, self.fps = path, fps
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None
        check_output_path(path, "recording")

    def write(self, image: np.ndarray) -> None:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        if self._writer is None:
            self._size = (bgr.shape[1], bgr.shape[0])
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise MediaError(f"cannot open {self.path} for writing mp4 video (is the path writable?)")
        if (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(bgr))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def video_frames(path: str) -> int:
    """Frame count of a video file (0 when it cannot be opened)."""
    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return n


def evenly_spaced(count: int, picks: int) -> np.ndarray:
    """Indices of min(picks, count) items spread evenly over `count`, first and last included."""
    return np.linspace(0, count - 1, min(picks, count)).round().astype(int)


def write_contact_sheet(path, images: list[np.ndarray], columns: int, labels: list[str] | None = None) -> None:
    """Tile 8-bit gray images `columns` to a row (each resized to the first one's size, the last row
    padded with black), each with its label at the top left, into one image file."""
    h, w = images[0].shape
    tiles = [cv2.resize(image, (w, h)) for image in images]   # copies: the labels are drawn on them
    for tile, label in zip(tiles, labels or []):
        cv2.putText(tile, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, 255, 1, cv2.LINE_AA)
    tiles += [np.zeros((h, w), np.uint8)] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    write_image(path, np.vstack(rows), "contact sheet")


class ContactSheet:
    """Keeps an evenly spaced sample of the frames offered (halving when full) for one contact sheet."""

    def __init__(self, tiles: int = 12, columns: int = 4):
        self.tiles, self.columns = tiles, columns
        self._frames: list[np.ndarray] = []
        self._step, self._count = 1, 0

    def offer(self, image_u1: np.ndarray) -> None:
        if self._count % self._step == 0:
            self._frames.append(image_u1.copy())
            if len(self._frames) >= 2 * self.tiles:
                self._frames = self._frames[::2]
                self._step *= 2
        self._count += 1

    def write(self, path) -> bool:
        """False when no frame was offered (nothing is written)."""
        if not self._frames:
            return False
        write_contact_sheet(path, [self._frames[i] for i in evenly_spaced(len(self._frames), self.tiles)],
                            self.columns)
        return True
