"""What comes from disk is data, bounded: files are read only up to a size checked first, and any value from them is
shown in a message shortened and with its control characters escaped, so that a damaged or hostile file (a
multi-gigabyte "config", a record holding terminal escape sequences) can neither exhaust memory nor reach the
terminal as anything but one readable line.

:func:`read_bounded` reads a file whose size is checked before it is opened for reading; :func:`shown` is how a
value from a file or from the command line appears in a message.
"""

from __future__ import annotations

import os
import re
from typing import Any

from spuriouslab.errors import ConfigError

TEXT_BYTES = 16 * 2**20
"""The default bound of a text file read whole (a config, an index, a run's metadata): 16 MiB."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(text: str) -> str:
    """``text`` with every control character (bidirectional overrides too) written as its escape."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def shown(value: object, limit: int = 200) -> str:
    """``value`` as a message shows it: its ``repr`` for strings (quotes tell where it starts and ends), ``str``
    otherwise, every control character escaped (``\\x1b``, ``\\n``; bidirectional overrides too), cut to ``limit``
    characters with the total length said.

    Examples
    --------
    >>> print(shown("red\\x1b[2J"))
    'red\\x1b[2J'
    >>> print(shown("x" * 1000, limit=20))
    'xxxxxxxxxxxxxxxxxx... (1002 characters)
    """
    text = _escaped(repr(value) if isinstance(value, str) else str(value))
    if len(text) > limit:
        return f"{text[: max(1, limit - 1)]}... ({len(text)} characters)"
    return text


def clean_line(text: str, limit: int = 2000) -> str:
    """A message as one terminal line: newlines and tabs become spaces, other control characters are escaped, and
    it is cut to ``limit`` characters."""
    text = _escaped(re.sub(r"[\n\r\t]+", " ", text))
    return text if len(text) <= limit else f"{text[: limit - 1]}... ({len(text)} characters)"


def read_tail(path: str | os.PathLike[str], limit: int = 2**20) -> str:
    """The last ``limit`` bytes of ``path`` as text (from its first whole line; undecodable bytes replaced):
    what a log's last entries need, however long it grew."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - limit))
        raw = fh.read(limit)
    if size > limit:
        raw = raw[raw.find(b"\n") + 1 :]
    return raw.decode("utf-8", errors="replace")


def read_bounded(path: str | os.PathLike[str], limit: int = TEXT_BYTES, what: str = "a text file") -> str:
    """The UTF-8 text of ``path``, refused in one line (:class:`~spuriouslab.errors.ConfigError`) when it is larger
    than ``limit`` bytes (checked before reading, and again while reading: a file that grows is cut off), not
    UTF-8, binary (a NUL byte) or unreadable."""
    source = clean_line(str(path), 300)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise ConfigError(f"{source}: {size} bytes is more than {limit} for {what}; is it the right file?")
            raw = fh.read(limit + 1)
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not {what}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise ConfigError(f"{source}: more than {limit} bytes for {what}; is it the right file?")
    if b"\x00" in raw:
        raise ConfigError(f"{source}: is a binary file, not {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: is not UTF-8 text") from None


def read_json(path: str | os.PathLike[str], limit: int = TEXT_BYTES, what: str = "a JSON file") -> Any:
    """The JSON content of ``path``, read with :func:`read_bounded`; not JSON is one line too."""
    import json

    text = read_bounded(path, limit, what)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{clean_line(str(path), 300)}: not {what} ({clean_line(str(exc), 120)})") from None
