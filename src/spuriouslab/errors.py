"""The exceptions the CLI maps to exit codes: :class:`ConfigError` and its subclasses (bad input, a missing
executor package, a run that cannot fit in memory) to one line and exit status 2, :class:`RunInterrupted` (Ctrl-C)
to its message and 130.  :class:`spuriouslab.runner.RunFailed` (failed groups) is exit status 1."""


class ConfigError(ValueError):
    """Bad user input: an unknown key, a value out of range, or an impossible combination."""


def describe(exc: BaseException, limit: int = 160) -> str:
    """An exception in one line: its type and the first line of its message (the type alone when it has none)."""
    text = str(exc).strip()
    first = text.splitlines()[0][:limit] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class ExecutorUnavailable(ConfigError):
    """An executor whose package is not installed (Ray, submitit): one line saying what to install."""


class MemoryRefused(ConfigError):
    """A run whose largest group cannot fit in the memory available (refused before its directory is touched)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what is saved and how to resume (the CLI exits 130 with it)."""
