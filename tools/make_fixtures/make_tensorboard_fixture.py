"""Write genuine TensorBoard event files with torch's SummaryWriter, the way verl's TensorBoard backend does
(`writer.add_scalar(key, value, step)` for every key of each step's metrics dict).

    python tools/make_fixtures/make_tensorboard_fixture.py tests/fixtures/tensorboard_verl

The run is the verl run of make_handwritten_fixtures.py: it crashes after step 25 and a second writer (a new
event file in the same folder, as after a restart) resumes from step 21.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, str(Path(__file__).parent))
from make_handwritten_fixtures import verl_rows


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = verl_rows(np.random.default_rng(0))
    writer = SummaryWriter(str(out))
    previous = -1
    for step, data in rows:
        if step < previous:  # the restart: the first process died, a new one opens a new event file
            writer.close()
            time.sleep(1.1)  # event file names start with the creation second
            writer = SummaryWriter(str(out))
        for key, value in data.items():
            writer.add_scalar(key, value, step)
        previous = step
    writer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tensorboard_verl"))
