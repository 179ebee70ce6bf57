"""The spuriouslab command line held at a known point of a run: right after its N-th record or checkpoint is durably
written, where SPURIOUSLAB_KILL_AFTER would SIGKILL it (``spuriouslab.store._crash_point``).

    python tests/signal_at.py KIND:N wait=PATH [spuriouslab arguments ...]

KIND is ``records`` or ``checkpoints``.  At that point the run creates ``PATH.held`` and waits until PATH exists (its
lock held, its worker pool up), then goes on.  A test sends its signal (SIGINT, SIGKILL, to the process or its
group) to a run it knows is there, or lets it go on, instead of guessing with sleeps.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main() -> None:
    point, action, *args = sys.argv[1:]
    kind, _, n = point.partition(":")
    if not action.startswith("wait="):
        raise SystemExit(f"signal_at.py: unknown action {action!r}")
    go = Path(action[len("wait=") :])
    counts = {"records": 0, "checkpoints": 0}
    held = False

    def crash_point(what: str, count: int = 1) -> None:
        nonlocal held
        counts[what] += count
        if held or what != kind or counts[what] < int(n):
            return
        held = True
        Path(f"{go}.held").write_text(str(os.getpid()))
        while not go.exists():
            time.sleep(0.02)

    from spuriouslab import store

    store._crash_point = crash_point
    sys.argv = ["spuriouslab", *args]
    from spuriouslab.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
