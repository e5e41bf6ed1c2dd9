"""Run every benchmark in bench/ in turn (each prints its own table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
status = 0
for script in sorted(here.glob("bench_*.py")):
    print(f"\n===== {script.name} =====", flush=True)
    rc = subprocess.call([sys.executable, str(script)])
    status = status or rc
sys.exit(status)
