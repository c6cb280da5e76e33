"""Where the shared development data (REDS_BASE recordings) lives."""
from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    """$SSML_SHARED_DATA, else `shared/data` beside the repository checkout (../shared/data)."""
    env = os.environ.get("SSML_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
