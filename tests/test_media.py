"""ssml_stream.media: contact sheets, image writing and mp4 recording (no display, no sockets)."""
import cv2
import numpy as np
import pytest

from ssml_stream.media import (ContactSheet, MediaError, Recorder, evenly_spaced, video_frames, write_contact_sheet,
                               write_image)


def test_evenly_spaced_keeps_first_and_last():
    assert evenly_spaced(100, 4).tolist() == [0, 33, 66, 99]
    assert evenly_spaced(3, 9).tolist() == [0, 1, 2]


def test_contact_sheet_pads_the_last_row_and_draws_labels(tmp_path):
    images = [np.full((40, 60), 100 + 20 * i, np.uint8) for i in range(5)]
    images[4] = np.zeros((80, 120), np.uint8)          # another size: resized to the first one's
    path = tmp_path / "sheet.png"
    write_contact_sheet(path, images, 3, labels=["a", "b", "c", "d", "t=5"])
    sheet = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert sheet.shape == (2 * 40, 3 * 60)
    assert sheet[40:, 120:].max() == 0                 # the padding tile
    assert sheet[40:, 60:120].max() == 255             # the label on the black fifth tile
    assert sheet[35, 5] == 100 and images[0][0, 0] == 100   # labels are drawn on copies


def test_contact_sheet_sampler_keeps_an_even_sample(tmp_path):
    sampler = ContactSheet(tiles=4, columns=2)
    assert not sampler.write(tmp_path / "none.png") and not (tmp_path / "none.png").exists()
    for i in range(100):
        sampler.offer(np.full((8, 8), i, np.uint8))
    assert sampler.write(tmp_path / "s.png")
    sheet = cv2.imread(str(tmp_path / "s.png"), cv2.IMREAD_GRAYSCALE)
    firsts = [sheet[0, 0], sheet[0, 8], sheet[8, 0], sheet[8, 8]]
    assert firsts[0] == 0 and firsts == sorted(firsts) and firsts[-1] >= 80, firsts


def test_unwritable_images_are_one_line_errors(tmp_path):
    for path in (tmp_path / "shot.unknown-suffix", tmp_path / "missing" / "shot.png"):
        with pytest.raises(MediaError, match="cannot write screenshot"):
            write_image(path, np.zeros((4, 4), np.uint8), "screenshot")


def test_recorder_fixes_the_size_with_its_first_frame(tmp_path):
    path = str(tmp_path / "r.mp4")
    recorder = Recorder(path, fps=10)
    recorder.write(np.zeros((48, 64), np.uint8))
    recorder.write(np.zeros((96, 128, 3), np.uint8))     # resized to 64 x 48
    recorder.close()
    assert recorder.frames == 2 and video_frames(path) == 2
    cap = cv2.VideoCapture(path)
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (48, 64, 3)
