"""Pages generated from the code when the docs are built, so they cannot drift from it.

* ``.. spuriouslab-experiments::`` - every experiment of :data:`spuriouslab.experiments.EXPERIMENTS`: its name,
  summary, overview (the package docstring), grid axes, default layers (presets, sweep shortcuts, data-set
  defaults), a table of its config fields (type with constraints, default as resolved, description: read from the
  pydantic ``model_fields``), its headline columns and the claims its reports judge.
* ``.. spuriouslab-registry:: NAME`` - a table of one registry (``activations``, ``datasets``, ``models``,
  ``streams``, ``figures``).
* ``.. spuriouslab-cli::`` - every command of the typer app (:data:`spuriouslab.cli.app`): usage, help, arguments and
  options with their defaults, read from the click command typer builds (``typer.main.get_command``).  (sphinx-click
  cannot be used: typer 0.2x ships its own copy of click, whose commands are not ``click.Command`` instances.)

Cells are built as docutils nodes (text and literals), never as reST source, so a description holding ``*`` or
``|`` is shown as written.  Only the package docstrings are parsed as reST: they are documentation.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias

import typer
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from spuriouslab.cli import app

Cell: TypeAlias = "str | nodes.Node | list[nodes.Node]"


# ------------------------------------------------------------------------------------------------ node helpers
def _cell_nodes(value: Cell) -> list[nodes.Node]:
    if isinstance(value, nodes.Node):
        return [value]
    if isinstance(value, list):
        return value
    return [nodes.Text(value)]


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], widths: Sequence[int] | None = None) -> nodes.table:
    """A docutils table with a header row; each cell is text, a node or a list of nodes."""
    widths = list(widths or [1] * len(headers))
    tbl = nodes.table(classes=["spuriouslab-table"])
    group = nodes.tgroup(cols=len(headers))
    tbl += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    head = nodes.thead()
    group += head
    head += _row(headers)
    body = nodes.tbody()
    group += body
    for row in rows:
        body += _row(row)
    return tbl


def _row(cells: Sequence[Cell]) -> nodes.row:
    row = nodes.row()
    for value in cells:
        entry = nodes.entry()
        entry += nodes.paragraph("", "", *_cell_nodes(value))
        row += entry
    return row


def literal(text: str) -> nodes.literal:
    return nodes.literal(text, text)


def paragraph(*parts: Cell) -> nodes.paragraph:
    out: list[nodes.Node] = []
    for p in parts:
        out.extend(_cell_nodes(p))
    return nodes.paragraph("", "", *out)


# ------------------------------------------------------------------------------------------- field rendering
def _validator_names(config: type | None = None) -> dict[Callable[..., Any], str]:
    """Validator functions of the field types (``ActivationName``, ``Width``, ...) -> the type's name, so a field
    shows the type it was declared with rather than ``str``: the types named in the config's own module first, then
    the shared ones."""
    from spuriouslab.activations import registry
    from spuriouslab.data import datasets
    from spuriouslab.experiments import fields
    from spuriouslab.nets import models

    own = [sys.modules[config.__module__]] if config is not None and config.__module__ in sys.modules else []
    names: dict[Callable[..., Any], str] = {}
    for module in (*own, fields, registry, datasets, models):
        for name, alias in vars(module).items():
            if not name[:1].isupper() or typing.get_origin(alias) is not typing.Annotated:
                continue
            for meta in alias.__metadata__:
                func = getattr(meta, "func", None)
                if func is not None and func is not fields.split_list:
                    names.setdefault(func, name)
    return names


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _bounds(metadata: Iterable[Any]) -> list[str]:
    out = []
    for meta in metadata:
        for inner in getattr(meta, "metadata", None) or [meta]:  # a FieldInfo inside Annotated holds its own
            for attr, sign in _BOUNDS:
                value = getattr(inner, attr, None)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out.append(f"{sign} {_number(value)}")
    return out


def _number(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10**5:
        exp = math.log10(abs(value))
        if exp == int(exp):
            return f"1e{int(exp)}"
        if value == 2**31:
            return "2^31"
    return f"{value:g}" if isinstance(value, float) else str(value)


def type_text(annotation: Any, metadata: Sequence[Any] = (), names: dict[Any, str] | None = None) -> str:
    """A field's type in a researcher's words: ``list[ActivationName]``, ``int >= 1``, ``'rf' | 'ntk'``."""
    names = _validator_names() if names is None else names
    bounds = _bounds(metadata)
    for meta in metadata:
        func = getattr(meta, "func", None)
        if func is not None and func in names:
            return _with_bounds(names[func], bounds)
    return _with_bounds(_type(annotation, names), bounds)


def _with_bounds(text: str, bounds: list[str]) -> str:
    return text + (", " + ", ".join(bounds) if bounds else "")


def _type(tp: Any, names: dict[Any, str]) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        base, *meta = args
        for m in meta:
            func = getattr(m, "func", None)
            if func in names:
                return _with_bounds(names[func], _bounds(meta))
        return _with_bounds(_type(base, names), _bounds(meta))
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) if not isinstance(a, str) else repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a, names) for a in args if a is not type(None)]
        text = " | ".join(dict.fromkeys(parts))
        return text + " | None" if type(None) in args else text
    if origin in (list, tuple, dict, set):
        inner = ", ".join(_type(a, names) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def default_text(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def fields_table(config: type, resolved: dict[str, Any], axes: Sequence[str]) -> nodes.table:
    names = _validator_names(config)
    rows = []
    for name, info in config.model_fields.items():  # type: ignore[attr-defined]
        default = resolved.get(name, info.default)
        rows.append(
            [
                literal(name) if name not in axes else [literal(name), nodes.Text(" (grid axis)")],
                literal(type_text(info.annotation, info.metadata, names)),
                literal(default_text(default)),
                info.description or "",
            ]
        )
    return table(["field", "type", "default", "description"], rows, widths=[16, 26, 18, 40])


def layers_table(config: type) -> nodes.table | None:
    rows = []
    for selector, layer in config.DEFAULTS:  # type: ignore[attr-defined]
        for choice in layer:
            values = layer[choice]
            if not values:
                continue
            sets = ", ".join(f"{k}={default_text(v)}" for k, v in values.items())
            rows.append([literal(f"{selector}={choice}"), literal(sets)])
    if not rows:
        return None
    return table(["when", "the defaults it sets (explicit values win; earlier layers win)"], rows, widths=[25, 75])


def claims_table(claims: Sequence[Any]) -> nodes.table:
    rows = []
    for c in claims:
        cond = ", ".join(f"{k}={v}" for k, v in c.when.items())
        if c.versus:
            cond += " vs " + ", ".join(f"{k}={v}" for k, v in c.versus.items())
        rows.append([c.text, literal(c.metric), literal(c.comparison), cond, c.figure])
    return table(["claim", "metric", "comparison", "conditions", "figure"], rows, widths=[44, 16, 10, 18, 12])


# ------------------------------------------------------------------------------------------------ directives
class ExperimentsDirective(SphinxDirective):
    """Every registered experiment, one section each."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from spuriouslab.experiments import EXPERIMENTS, get_experiment

        out: list[nodes.Node] = [
            paragraph(
                f"{len(EXPERIMENTS)} experiments are registered: ",
                *_joined(literal(n) for n in EXPERIMENTS),
                ". Each runs with ",
                literal("spuriouslab run NAME --set field=value"),
                " (a list on any field sweeps it) or in Python with ",
                literal("run_points(get_experiment(NAME), config)"),
                ".",
            )
        ]
        for name in EXPERIMENTS:
            out.append(self._section(name, get_experiment(name)))
        return out

    def _section(self, name: str, exp: Any) -> nodes.section:
        from spuriouslab.experiments import EXPERIMENTS

        section = nodes.section(ids=[nodes.make_id(f"experiment-{name}")], names=[nodes.fully_normalize_name(name)])
        section += nodes.title(name, name)
        self.state.document.note_implicit_target(section, section)
        module = importlib.import_module(EXPERIMENTS[name])
        section += paragraph(
            nodes.strong(exp.summary, exp.summary),
            " (config class ",
            literal(exp.Config.__name__),
            ", package ",
            literal(EXPERIMENTS[name]),
            ").",
        )
        doc = inspect.getdoc(module)
        if doc:
            container = nodes.container(classes=["spuriouslab-overview"])
            nested_parse_with_titles(self.state, StringList(doc.splitlines(), source=module.__name__), container)
            section += container
        config = exp.Config
        axes = config.AXES
        section += paragraph(
            "Grid axes (lists: every combination runs, times the seeds): ",
            *(_joined(literal(a) for a in axes) if axes else [nodes.Text("none")]),
            ". Headline columns: ",
            *(_joined(literal(h) for h in exp.headline) if exp.headline else [nodes.Text("none")]),
            ".",
        )
        section += paragraph(
            "Fields (defaults as ",
            literal("spuriouslab list"),
            " shows them: with the default presets and data-set layers applied):",
        )
        section += fields_table(config, exp.default_config(), axes)
        layers = layers_table(config)
        if layers is not None:
            section += paragraph("Default layers (", literal("DEFAULTS"), "):")
            section += layers
        if exp.claims:
            section += paragraph(f"Claims judged on every report ({len(exp.claims)}):")
            section += claims_table(exp.claims)
        return section


def _joined(items: Iterable[nodes.Node], sep: str = ", ") -> list[nodes.Node]:
    out: list[nodes.Node] = []
    for i, item in enumerate(items):
        if i:
            out.append(nodes.Text(sep))
        out.append(item)
    return out


def _activations() -> nodes.table:
    from spuriouslab.activations.registry import ACTIVATIONS

    rows = [[literal(n), a.description, literal(a.phi.name), literal(a.dphi.name)] for n, a in ACTIVATIONS.items()]
    rows.append([literal("hermite:c0,c1,..."), "any Hermite series (NTK: its exact derivative)", "", ""])
    return table(["name", "description", "phi (RF, nets)", "phi' (NTK)"], rows, widths=[18, 52, 15, 15])


def _datasets() -> nodes.table:
    from spuriouslab.data.datasets import DATASETS

    rows = []
    for n, s in DATASETS.items():
        shape = "x".join(map(str, s.shape)) if s.shape else "from the files"
        if s.package:
            where: Cell = f"shipped in the {s.package} package"
        elif s.marker is None and s.subdir is None:
            where = "built in" if s.shape is not None else [literal("data_root"), nodes.Text(" itself")]
        else:
            system = [nodes.Text(" or "), literal(str(s.system))] if s.system else []
            where = [literal(f"<root>/{s.subdir}/"), *system]
        rows.append([literal(n), s.description, literal(shape), where, "yes" if s.sources else ""])
    return table(["name", "description", "shape", "found", "data fetch"], rows, widths=[18, 46, 12, 14, 10])


def _models() -> nodes.table:
    from spuriouslab.nets.models import MODELS

    rows = [[literal(n), s.description, s.role, "yes" if s.batchnorm else ""] for n, s in MODELS.items()]
    return table(["name", "description", "role", "BatchNorm"], rows, widths=[18, 58, 12, 12])


def _streams() -> nodes.table:
    from spuriouslab.seeding import STREAMS

    return table(["stream", "id"], [[literal(n), str(i)] for n, i in STREAMS.items()], widths=[70, 30])


def _figures() -> nodes.table:
    from spuriouslab.figures import FIGURES

    rows = [[literal(n), f.paper, f.shows, literal(f.config), f.cpu] for n, f in FIGURES.items()]
    return table(["name", "paper", "shows", "config", "CPU time"], rows, widths=[16, 14, 44, 14, 12])


def _experiments() -> nodes.table:
    from spuriouslab.experiments import EXPERIMENTS, get_experiment

    rows = [[literal(n), get_experiment(n).summary, literal(m)] for n, m in EXPERIMENTS.items()]
    return table(["name", "summary", "package"], rows, widths=[18, 52, 30])


REGISTRIES: dict[str, Callable[[], nodes.table]] = {
    "activations": _activations,
    "datasets": _datasets,
    "models": _models,
    "streams": _streams,
    "figures": _figures,
    "experiments": _experiments,
}


class RegistryDirective(SphinxDirective):
    """A table of one registry's entries, read from it at build time."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in REGISTRIES:
            raise self.error(f"spuriouslab-registry: unknown registry {name!r}; known: {', '.join(REGISTRIES)}")
        return [REGISTRIES[name]()]


# ------------------------------------------------------------------------------------------------------- CLI
def _help_paragraphs(text: str | None) -> list[nodes.Node]:
    if not text:
        return []
    blocks = [b.strip() for b in inspect.cleandoc(text).replace("\b\n", "").split("\n\n")]
    return [paragraph(" ".join(line.strip() for line in b.splitlines())) for b in blocks if b]


class CliDirective(SphinxDirective):
    """Every command of the typer app, one section each (groups nest)."""

    has_content = False
    option_spec = {"prog": lambda text: text.strip()}

    def run(self) -> list[nodes.Node]:
        command = typer.main.get_command(app)
        prog = self.options.get("prog", "spuriouslab")
        ctx = command.context_class(command, info_name=prog)
        return self._command(command, ctx, prog, top=True)

    def _command(self, command: Any, ctx: Any, path: str, top: bool = False) -> list[nodes.Node]:
        body: list[nodes.Node] = []
        body.append(nodes.literal_block(text=command.get_usage(ctx)))
        body.extend(_help_paragraphs(command.help))
        arguments: list[list[Cell]] = []
        options: list[list[Cell]] = []
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or param.name == "help" or getattr(param, "hidden", False):
                continue
            names, text = record
            row = [literal(names), text]
            (options if getattr(param, "param_type_name", "") == "option" else arguments).append(row)
        if arguments:
            body.append(table(["argument", "description"], arguments, widths=[30, 70]))
        if options:
            body.append(table(["option", "description"], options, widths=[30, 70]))
        subcommands = getattr(command, "commands", None)
        children: list[nodes.Node] = []
        if subcommands:
            names = [n for n in command.list_commands(ctx) if not subcommands[n].hidden]
            rows = [[literal(f"{path} {n}"), subcommands[n].get_short_help_str(limit=120)] for n in names]
            body.append(table(["command", "what it does"], rows, widths=[30, 70]))
            for n in names:
                sub = subcommands[n]
                children.extend(self._command(sub, command.context_class(sub, info_name=n, parent=ctx), f"{path} {n}"))
        if top:
            return body + children
        section = nodes.section(ids=[nodes.make_id("cli-" + path)], names=[nodes.fully_normalize_name(path)])
        section += nodes.title(path, path)
        self.state.document.note_implicit_target(section, section)
        for node in body + children:
            section += node
        return [section]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("spuriouslab-experiments", ExperimentsDirective)
    app.add_directive("spuriouslab-registry", RegistryDirective)
    app.add_directive("spuriouslab-cli", CliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
