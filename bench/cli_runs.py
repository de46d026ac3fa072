"""Running the medsight command from benchmark scripts (the one installed beside this Python)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

MEDSIGHT = Path(sys.executable).parent / "medsight"


def medsight(*args: str) -> float:
    """Run a medsight command (output to this console); its wall time in seconds."""
    cmd = [str(MEDSIGHT), *args]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0
