"""Reading config values the way a researcher writes them.

YAML 1.1 (PyYAML's default) reads ``1_0`` as 10, ``yes``/``no``/``on``/``off`` as booleans and ``1e5`` as a
string, and lets a duplicate key silently win.  This loader keeps YAML's syntax (mappings, ``[a, b]`` flow lists)
but resolves scalars strictly: integers are ``[-+]?[0-9]+``; floats are decimal or scientific (``1e5``, ``2.5E-3``,
``.inf``, ``.nan``); booleans are ``true``/``false`` only; everything else is a string; a duplicate key is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from typing import Any

import yaml

from spuriouslab.errors import ConfigError

_DROP = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with strict scalar resolution and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"unhashable key {key!r}", key_node.start_mark
                    ) from None
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load(text: str, source: str = "config") -> Any:
    """Parse YAML text strictly; a syntax error or duplicate key is a one-line ConfigError naming ``source``."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ").strip()
        raise ConfigError(f"{source}: not valid YAML ({first[:200]})") from None


def load_file(path: str | os.PathLike[str], source: str | None = None) -> Any:
    """Read and parse a YAML file; unreadable, binary or non-UTF-8 content is a one-line ConfigError."""
    source = source or str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    if b"\x00" in raw:
        raise ConfigError(f"{source}: is a binary file, not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: is not UTF-8 text") from None
    return load(text, source)
