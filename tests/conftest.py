import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Each test session builds into its own cache, so stale libraries never hide a bug."""
    if "MCU_MOT_CACHE" not in os.environ:
        os.environ["MCU_MOT_CACHE"] = str(tmp_path_factory.mktemp("mm-cache"))
    yield
