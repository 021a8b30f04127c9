import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    # make test sets OMP_NUM_THREADS (TEST_THREADS, one per xdist worker); learning-test
    # thresholds were measured at one thread
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
