"""Process-wide runtime settings applied by the CLI and its worker processes.

glibc serves every allocation above its mmap threshold (at most 32 MB, however it adapts) with a fresh
``mmap``, whose pages the kernel must fault in and zero on first touch.  Training loops and Gram
accumulations free and re-allocate buffers of 50-200 MB every step, so on CPU they spent most of their time
in the kernel (measured: a CNN ensemble step 2.3-2.6x faster, system time 26 s -> 1.6 s).  Raising the
thresholds keeps freed blocks in the heap for reuse; the price is a higher resident size (about +25% there).
Set ``SPURIOUSLAB_MALLOC=default`` to leave the allocator alone.

``SPURIOUSLAB_FIGURE_FORMATS`` says which files each figure is saved as (:func:`figure_formats`).
"""

from __future__ import annotations

import ctypes
import os
import sys

FIGURE_FORMATS = ("png", "pdf", "svg")
"""The formats a figure can be saved in; PNG always is (the summary and the HTML report show it)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def tune_allocator() -> bool:
    """Keep large freed blocks in the heap (glibc only); returns whether the setting was applied."""
    global _done
    if _done or os.environ.get("SPURIOUSLAB_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31))
    except (OSError, AttributeError):  # not glibc
        _done = False
    return _done


def die_with_parent(parent: int, *_: object) -> None:
    """Worker initializer (process pools; DataLoader workers, whose worker id is ignored): end this worker when
    the parent process dies (even by SIGKILL).  On Linux the kernel sends SIGKILL (prctl PR_SET_PDEATHSIG);
    everywhere a watchdog thread notices the parent is gone."""
    import signal
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="spuriouslab-parent-watch").start()


def figure_formats() -> tuple[str, ...]:
    """The file formats each figure is saved in: ``$SPURIOUSLAB_FIGURE_FORMATS``, a comma-separated subset of
    :data:`FIGURE_FORMATS` (default ``png,pdf``); PNG is always among them.  ``png`` alone halves the time a report
    takes to draw.  A bad value is a :class:`~spuriouslab.errors.ConfigError` naming the variable."""
    from spuriouslab.errors import ConfigError

    raw = os.environ.get("SPURIOUSLAB_FIGURE_FORMATS", "").strip() or "png,pdf"
    asked = [f.strip().lower() for f in raw.split(",") if f.strip()]
    bad = [f for f in asked if f not in FIGURE_FORMATS]
    if bad or not asked:
        raise ConfigError(
            f"SPURIOUSLAB_FIGURE_FORMATS: got {raw!r}; allowed: a comma-separated subset of {', '.join(FIGURE_FORMATS)}"
        )
    return tuple(dict.fromkeys(["png", *asked]))
