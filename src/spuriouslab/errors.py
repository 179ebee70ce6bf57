"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class ConfigError(ValueError):
    """Bad user input: an unknown key, a value out of range, or an impossible combination."""


def describe(exc: BaseException, limit: int = 160) -> str:
    """An exception in one line: its type and the first line of its message (the type alone when it has none)."""
    text = str(exc).strip()
    first = text.splitlines()[0][:limit] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
