import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("SSML_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
REDS_TEST = SHARED_DATA / "reds_base" / "test" / "200_part1_key_id151"


@pytest.fixture
def reds_test():
    """(dat path, ground-truth intensity in [0,1]) of the REDS_BASE development test file."""
    dat = REDS_TEST.with_suffix(".dat")
    if not dat.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set SSML_SHARED_DATA)")
    import cv2
    gt = cv2.imread(str(REDS_TEST.with_suffix(".png")), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    return dat, gt


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
