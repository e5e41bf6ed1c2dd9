"""YAML for spec files: line numbers for every value and no silent duplicate keys.

:func:`parse_yaml` gives mappings (:class:`YamlMap`) and sequences (:class:`YamlSeq`) that
remember the line of each value, so that a :class:`~robo_player.errors.SpecError` can
name it; a duplicate key, or a YAML syntax error, is a SpecError naming the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError

# ---------------------------------------------------------------------------------
# YAML with line numbers and no silent duplicate keys


class YamlMap(dict[Any, Any]):
    """A YAML mapping that remembers the line (1-based) of each value."""

    lines: dict[Any, int]
    line: int


class YamlSeq(list[Any]):
    """A YAML sequence that remembers the line (1-based) of each item."""

    lines: list[int]
    line: int


# libyaml's parser when PyYAML has it (about 10x faster), the Python one otherwise.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    out = YamlMap()
    out.lines = {}
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            dup = key in out
        except TypeError as err:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"unhashable key {key!r}",
                key_node.start_mark,
            ) from err
        if dup:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"duplicate key {key!r} (first on line {out.lines[key]})",
                key_node.start_mark,
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = value_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> YamlSeq:
    out = YamlSeq(loader.construct_object(child, deep=True) for child in node.value)
    out.lines = [child.start_mark.line + 1 for child in node.value]
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def display_path(path: Path) -> str:
    """The path as messages show it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        raise SpecError(f"{source}: {where}YAML syntax error: {problem}") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: YAML syntax error: {err}") from err
