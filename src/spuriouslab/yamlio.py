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

from spuriouslab.bounded import TEXT_BYTES, clean_line, read_bounded
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


MAX_NODES = 100_000
"""The most values a YAML document may expand to, aliases expanded: a few hundred bytes of nested aliases (``&a
[x, x]``, ``&b [*a, *a]``, ...) would otherwise expand to billions (an "alias bomb")."""


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """The number of values ``node`` expands to, each alias counted as often as it is used (so that a shared
    subtree is counted once per use, as construction would build it)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_NODES + 1  # a recursive alias (a node inside itself) expands without end
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[key] = min(size, MAX_NODES + 1)
    return memo[key]


def load(text: str, source: str = "config") -> Any:
    """Parse YAML text strictly; a syntax error, a duplicate key or a document that expands (its aliases
    expanded) to more than :data:`MAX_NODES` values is a one-line ConfigError naming ``source``."""
    try:
        loader = StrictLoader(text)  # its reader refuses control characters at once
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({clean_line(str(exc), 200)})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise ConfigError(f"{source}: expands to more than {MAX_NODES} values (its aliases expanded); refused")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({clean_line(str(exc), 200)})") from None
    finally:
        loader.dispose()


def load_file(path: str | os.PathLike[str], source: str | None = None) -> Any:
    """Read and parse a YAML file; a file over :data:`~spuriouslab.bounded.TEXT_BYTES`, unreadable, binary or
    non-UTF-8 content is a one-line ConfigError."""
    text = read_bounded(path, TEXT_BYTES, "a YAML file")
    return load(text, source or clean_line(str(path), 300))
