"""The spuriouslab command line with a real signal (or a pause) at a known point of a run: right after its N-th record
or checkpoint is durably written, where SPURIOUSLAB_KILL_AFTER would SIGKILL it (``spuriouslab.store._crash_point``).

    python tests/signal_at.py KIND:N ACTION [spuriouslab arguments ...]

KIND is ``records`` or ``checkpoints``; ACTION one of

- ``sigint``: SIGINT to this process (the kernel delivers it; Python's own handler raises KeyboardInterrupt);
- ``ctrl-c``: SIGINT to this process's group, as a terminal's Ctrl-C (worker processes get it too).  Start this
  script in a session of its own (``start_new_session=True``), or the group is the caller's;
- ``wait=PATH``: block until PATH exists, then go on (a run held at a known point, its lock held).

A test then knows where the run stopped, instead of guessing with sleeps.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def main() -> None:
    point, action, *args = sys.argv[1:]
    kind, _, n = point.partition(":")
    counts = {"records": 0, "checkpoints": 0}
    fired = False

    def crash_point(what: str, count: int = 1) -> None:
        nonlocal fired
        counts[what] += count
        if fired or what != kind or counts[what] < int(n):
            return
        fired = True
        if action == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        elif action == "ctrl-c":
            os.killpg(os.getpgrp(), signal.SIGINT)
        elif action.startswith("wait="):
            while not os.path.exists(action[len("wait=") :]):
                time.sleep(0.02)
        else:
            raise SystemExit(f"signal_at.py: unknown action {action!r}")
        if action in ("sigint", "ctrl-c"):
            time.sleep(30)  # Python raises KeyboardInterrupt at its next check, well before this ends

    from spuriouslab import store

    store._crash_point = crash_point
    sys.argv = ["spuriouslab", *args]
    from spuriouslab.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
