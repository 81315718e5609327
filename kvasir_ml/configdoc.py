"""Config documentation with one source: the pydantic models' ``Field(description=...)``.

The YAML files under ``configs/`` are *generated* from the models: every key with its value
and a ``# (type) description`` comment, like ultralytics' ``default.yaml``. A file keeps its
own header (the comment lines above the first key: what the config is for and why its
values were chosen); everything below is rendered, so a description can never drift from
the model. A file without ``base`` lists every key; a file with ``base`` (a variant) lists
only the keys it sets itself, each documented the same way. ``kvasir-ml config sync``
rewrites the files after a model changes, ``kvasir-ml config sync --check`` (and a test) fail
when they are stale, and ``kvasir-ml config show CONFIG [key=value ...]`` prints a resolved
config whole (every key, bases merged in) in the same form, loadable as a config itself.
"""

from __future__ import annotations

import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import BaseModel

from kvasir_ml.config import CONFIG_KINDS, ConfigError, base_chain, compose_yaml, load_config, read_yaml_mapping, sub_model

__all__ = ["CONFIG_KINDS", "field_docs", "kind_of", "model_class", "render_config", "rendered_file", "show_config",
           "sync_configs"]
_KIND_DOC = (f"({' | '.join(CONFIG_KINDS)}) which config model reads this file (never guessed from the file "
             "name)")
_BASE_DOC = ("(str) the config file this one starts from (relative to this file): only the keys below differ "
             "from it; `kvasir-ml config show` prints the whole")
_COMMENT_COLUMN = 35  # where the "# (type) description" comments start (ultralytics style)
_INDENT = "  "


@dataclass(frozen=True)
class FieldDoc:
    """One config key: dotted name, type as written in the docs, description, section or not."""

    key: str
    type: str
    description: str
    is_section: bool


def model_class(kind: str) -> type[BaseModel]:
    """The config model of a kind (``classifier``, ``detector``, ``experiment``)."""
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"unknown config kind {kind!r}; known: {', '.join(CONFIG_KINDS)}")
    module, name = CONFIG_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def kind_of(path: str | Path) -> str:
    """The kind of a config file: its ``kind`` key (or the nearest of its bases' that has one).

    Raises:
        ConfigError: no ``kind`` key (naming the file), or an unknown kind.
    """
    from kvasir_ml.resources import find_config

    kind = compose_yaml(find_config(path) or path).get("kind")
    if kind is None:
        raise ConfigError(f"{path}: no `kind:` key; add `kind: {'|'.join(CONFIG_KINDS)}` to the file (or to its "
                          "base), or pass --kind (the kind is not taken from the file name)")
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"{path}: kind {kind!r} is not one of {', '.join(CONFIG_KINDS)}")
    return kind


def type_name(annotation: Any) -> str:
    """A type as the YAML comments write it: ``int``, ``str | null``, ``raw | masked``, ``list[float]``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        inner = sorted({type_name(a) for a in args if a is not Ellipsis})
        return f"list[{' | '.join(inner)}]" if inner else "list"
    if origin is dict:
        return f"dict[{type_name(args[0])}, {type_name(args[1])}]" if args else "dict"
    return getattr(annotation, "__name__", str(annotation))


def _section_doc(info: Any, sub: type[BaseModel]) -> str:
    """A section's description: its field's, else the first line of the model's docstring."""
    doc_lines = (sub.__doc__ or "").strip().splitlines()
    return info.description or (doc_lines[0] if doc_lines else "")


def _field_type(info: Any) -> str:
    """A field's type as the docs write it, with its bounds: ``int, >= 1``."""
    marks = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    bounds = [f"{marks[name]} {getattr(m, name)}" for m in info.metadata for name in marks if hasattr(m, name)]
    return ", ".join([type_name(info.annotation), *bounds])


def field_docs(model: type[BaseModel], prefix: str = "") -> Iterator[FieldDoc]:
    """Every key of a config model (depth first, in declaration order)."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        sub = sub_model(info.annotation)
        if sub is not None:
            yield FieldDoc(key, "section", _section_doc(info, sub), True)
            yield from field_docs(sub, f"{key}.")
            continue
        yield FieldDoc(key, _field_type(info), info.description or "", False)


def _value_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text.removesuffix("\n...").strip()


def _render(cfg: BaseModel, depth: int, overridden: frozenset[str], prefix: str,
            only: frozenset[str] | None = None) -> list[str]:
    lines: list[str] = []
    values = cfg.model_dump(mode="json")
    last = ""
    for name, info in type(cfg).model_fields.items():
        key, pad = f"{prefix}{name}", _INDENT * depth
        sub = sub_model(info.annotation)
        if only is not None and key not in only and not any(k.startswith(f"{key}.") for k in only):
            continue  # a variant lists only the keys it sets
        if sub is not None:
            doc = _section_doc(info, sub)
            if depth == 0 and lines:
                lines.append("")
            lines.append(f"{pad}{name}:".ljust(_COMMENT_COLUMN) + f"# {doc}" if doc else f"{pad}{name}:")
            lines += _render(getattr(cfg, name), depth + 1, overridden, f"{key}.", only)
            last = name
            continue
        if depth == 0 and lines and sub_model(type(cfg).model_fields[last].annotation) is not None:
            lines.append("")  # a top-level key after a section: keep it visibly apart
        last = name
        kind = _field_type(info)
        mark = " [set]" if key in overridden else ""
        head = f"{pad}{name}: {_value_text(values[name])}"
        lines.append(f"{head.ljust(_COMMENT_COLUMN - 1)} # ({kind}){mark} {info.description or ''}".rstrip())
    return lines


def _file_line(key: str, value: str, doc: str) -> str:
    return f"{f'{key}: {value}'.ljust(_COMMENT_COLUMN - 1)} # {doc}"


def render_config(cfg: BaseModel, header: str = "", overridden: set[str] | frozenset[str] = frozenset(),
                  kind: str | None = None, base: str | None = None, only: set[str] | frozenset[str] | None = None) -> str:
    """YAML text of a config: ``header`` (comment lines), ``base`` and ``kind``, then every key
    (or the ``only`` ones) with its description.

    Args:
        cfg: a validated config.
        header: comment lines kept verbatim at the top.
        overridden: dotted keys to mark ``[set]`` (``config show`` marks the key=value overrides).
        kind: the ``kind:`` line to write (None: none).
        base: the ``base:`` line to write (a variant's base file; None: none).
        only: dotted keys to list (a variant's own keys; their sections come along); None = all.
    """
    top = ([_file_line("base", base, _BASE_DOC)] if base else []) + ([_file_line("kind", kind, _KIND_DOC)]
                                                                      if kind else [])
    body = "\n".join(_render(cfg, 0, frozenset(overridden), "", None if only is None else frozenset(only)))
    return (header.rstrip() + "\n\n" if header.strip() else "") + "".join(f"{line}\n" for line in top) + body + "\n"


def own_keys(model: type[BaseModel], raw: dict, prefix: str = "") -> set[str]:
    """Dotted keys a file's own mapping sets (down to the model's leaves; a mapping-valued key
    such as ``variants`` counts as one)."""
    keys = set()
    for name, value in raw.items():
        info = model.model_fields.get(name)
        sub = sub_model(info.annotation) if info is not None else None
        if sub is not None and isinstance(value, dict):
            keys |= own_keys(sub, value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def file_header(path: str | Path) -> str:
    """The comment block above a YAML file's first key (kept when the file is regenerated)."""
    lines: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or (not line.strip() and lines):
            lines.append(line)
        else:
            break
    return "\n".join(lines).rstrip()


def rendered_file(path: str | Path) -> str:
    """What a config file should contain: its header, ``base`` and ``kind``, then its resolved
    values, documented (a variant: only the keys it sets itself)."""
    kind = kind_of(path)
    model = model_class(kind)
    cfg = load_config(model, path)
    own = read_yaml_mapping(path)
    base = own.pop("base", None)
    own.pop("kind", None)
    return render_config(cfg, file_header(path), kind=kind, base=base,
                         only=None if base is None else own_keys(model, own))


def sync_configs(folder: str | Path, check: bool = False) -> list[Path]:
    """Regenerate every config file in ``folder`` (a YAML file with a ``kind``, its own or a
    base's; others, such as W&B sweep files, are not ours); with ``check``, only list stale ones.

    Returns:
        The files that were (or, with ``check``, would be) rewritten.
    """
    from kvasir_ml.io import atomic_write_text

    stale = []
    for path in sorted(Path(folder).glob("*.yaml")):
        if compose_yaml(path).get("kind") is None:
            continue  # e.g. a W&B sweep file: not one of our models
        text = rendered_file(path)
        if text != path.read_text(encoding="utf-8"):
            stale.append(path)
            if not check:
                atomic_write_text(path, text)
    return stale


def show_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), kind: str | None = None) -> str:
    """``kvasir-ml config show``: the resolved config whole (bases merged in, every key, with its
    description; overrides marked ``[set]``), YAML that loads back to the same config."""
    from kvasir_ml.resources import find_config

    if path is None and kind is None:
        raise ConfigError("give a config file or --kind")
    kind = kind or kind_of(path)  # type: ignore[arg-type]  # path is not None when kind is None (checked above)
    cfg = load_config(model_class(kind), path, overrides)
    overridden = {item.split("=", 1)[0].strip() for item in overrides}
    bases = [] if path is None else [str(p.name) for p, _ in base_chain(find_config(path) or path)[1:]]
    source = (f"# {kind} config: {path or 'defaults'}" + (f" (base: {' -> '.join(bases)})" if bases else "")
              + (f" + {' '.join(overrides)}" if overrides else ""))
    return render_config(cfg, source, overridden, kind=kind)

