"""Typed, validated experiment configs read from TOML.

A config section is a frozen dataclass. :func:`parse` builds one from a dict and rejects, with
one clear ``ValueError`` naming the dotted field, unknown keys, wrong types and out-of-range
values. Ranges and choices are declared in field metadata::

    @dataclasses.dataclass(frozen=True)
    class Data:
        num_samples: int = field(default=64, metadata=spec(min=1))
        kind: str = field(default="breast", metadata=spec(choices=("breast", "brain")))
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def spec(*, min: float | None = None, max: float | None = None, choices: tuple | None = None,
         unit: str = "", doc: str = "") -> dict[str, Any]:
    """Field metadata: inclusive bounds, allowed choices, unit and a one-line description."""
    return {"min": min, "max": max, "choices": choices, "unit": unit, "doc": doc}


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error raises ``ValueError`` with the path."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: must be {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: must have {len(args)} entries, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: must be a table, got {value!r}")
        return parse(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: must be a string, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: must be a table, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {where}")


def _check_range(value: Any, meta: dict[str, Any], where: str) -> None:
    if not meta:
        return
    values = value if isinstance(value, tuple) else (value,)
    unit = f" {meta['unit']}" if meta.get("unit") else ""
    for v in values:
        if v is None:
            continue
        if meta.get("choices") is not None and v not in meta["choices"]:
            raise ValueError(f"{where}: must be one of {list(meta['choices'])}, got {v!r}")
        lo, hi = meta.get("min"), meta.get("max")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
                raise ValueError(f"{where}: must be in {rng}{unit}, got {v!r}")


def parse(cls: type[T], data: dict[str, Any], section: str) -> T:
    """Build the dataclass ``cls`` from ``data``, validating every field.

    Args:
        cls: a dataclass type whose fields carry :func:`spec` metadata.
        data: the TOML table.
        section: dotted name used in error messages (e.g. ``"data"``).

    Raises:
        ValueError: ``"<section>.<key>: ..."`` for an unknown key, a wrong type, a value out of
            range, or a missing required field.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{section}: must be a table, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{section}.{unknown[0]}: unknown key; allowed keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        where = f"{section}.{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}: required key is missing")
            continue
        value = _coerce(data[name], hints[name], where)
        _check_range(value, dict(f.metadata), where)
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain TOML-compatible data (tuples become lists, ``None`` dropped)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items() if v is not None}
    return obj


def with_defaults(cls: type, stored: Any, section: str) -> Any:
    """A stored table of ``cls`` (a dataset manifest's config, a checkpoint's settings) as
    :func:`to_dict` gives it today: settings added to ``cls`` since it was written take their
    defaults, which reproduce the earlier behaviour. The table as is when it no longer parses (a
    setting removed or renamed since), so that comparing it with a current config shows the change."""
    try:
        return to_dict(parse(cls, stored, section))
    except (ValueError, TypeError):
        return stored


def dump_toml(data: dict[str, Any]) -> str:
    """Serialise nested dicts of scalars and lists to TOML text (enough for our configs)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def table(d: dict[str, Any], prefix: str) -> list[str]:
        lines = [f"{k} = {scalar(v)}" for k, v in d.items() if not isinstance(v, dict)]
        for k, v in d.items():
            if isinstance(v, dict):
                name = f"{prefix}.{k}" if prefix else k
                lines += ["", f"[{name}]"] + table(v, name)
        return lines

    return "\n".join(table(data, "")).strip() + "\n"
