"""Typed settings from plain data: dataclass fields with a default, a meaning and checks.

A section is a dataclass whose fields are made with :func:`setting`; :func:`parse` turns
a mapping (from YAML) into it, refusing unknown keys and wrong values with the key's
dotted path. ``null`` anywhere means "not set": the key takes its default.
"""
from __future__ import annotations

import dataclasses
import datetime
import difflib
import typing
from typing import Any, Callable, Literal, Union

from persona.errors import PersonaError


def setting(default: Any, doc: str, *, minimum: float | None = None,
            check: tuple[Callable[[Any], bool], str] | None = None,
            expect: str | None = None) -> Any:
    """A field: its ``default``, a one-line ``doc``; values below ``minimum`` or failing
    ``check`` (a predicate and what it expects, in words) are refused; ``expect`` words
    the whole value's requirement in place of its type's."""
    meta = {"doc": doc, "minimum": minimum, "check": check, "expect": expect}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: _copy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """A nested section: the dataclass ``cls`` with its own defaults."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc})


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def hints(cls: type) -> dict[str, Any]:
    """The resolved type of each field of the dataclass ``cls``."""
    return typing.get_type_hints(cls)


def suggestion(name: str, candidates, prefix: str = "") -> str:
    """`` (did you mean X?)`` for the nearest of ``candidates``, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_key(path: str, name: str, candidates, prefix: str) -> PersonaError:
    return PersonaError(f"unknown configuration key {path}"
                        f"{suggestion(name, candidates, prefix)}")


def describe(tp: Any) -> str:
    """What a value of type ``tp`` is, in words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is Literal:
        if len(args) == 1:
            return str(args[0])
        return "one of " + ", ".join(str(a) for a in args)
    if origin is list:
        inner = describe(args[0])
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings",
                  "a mapping": "mappings"}
        return f"a list of {plural.get(inner, inner)}"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            Any: "a value"}.get(tp, str(tp))


def convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` as type ``tp``; a :class:`PersonaError` naming ``path`` if it is not one."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path)
    if origin is Union:
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return convert(value, option, path)
            except PersonaError:
                if len(options) == 1 or (dataclasses.is_dataclass(option)
                                         and isinstance(value, dict)):
                    raise
        raise _wrong(path, tp, value)
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise _wrong(path, tp, value)
    if origin is list:
        if not isinstance(value, list):
            raise _wrong(path, tp, value)
        return [convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(path, tp, value)
        return {str(k): convert(v, args[1], f"{path}.{k}") for k, v in value.items()
                if v is not None}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):  # unquoted YAML dates
            return str(value)
    raise _wrong(path, tp, value)


def _wrong(path: str, tp: Any, value: Any) -> PersonaError:
    return PersonaError(f"{path} must be {describe(tp)}, got {value!r}")


def parse(cls: type, data: Any, path: str = "") -> Any:
    """The dataclass ``cls`` from the mapping ``data``, checked; defaults for what is absent."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise PersonaError(f"{path or 'the configuration'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = hints(cls)
    prefix = f"{path}." if path else ""
    values = {}
    for name, value in data.items():
        if name not in fields:
            raise unknown_key(f"{prefix}{name}", name, fields, prefix)
        if value is None:
            continue
        values[name] = field_value(fields[name], types[name], value, f"{prefix}{name}")
    out = cls(**values)
    check = getattr(out, "check", None)
    if check is not None:
        check(path)
    return out


def field_value(field: dataclasses.Field, tp: Any, value: Any, path: str) -> Any:
    """``value`` converted to the field's type and checked against its metadata."""
    meta = field.metadata
    try:
        out = convert(value, tp, path)
    except PersonaError:
        if meta.get("expect"):
            raise PersonaError(f"{path} must be {meta['expect']}, got {value!r}") from None
        raise
    minimum = meta.get("minimum")
    if minimum is not None and isinstance(out, (int, float)) and out < minimum:
        raise PersonaError(f"{path} must be >= {minimum}, got {out!r}")
    if meta.get("check") and out is not None:
        predicate, expects = meta["check"]
        if not predicate(out):
            raise PersonaError(f"{path} must be {expects}, got {value!r}")
    return out


def to_data(value: Any) -> Any:
    """Plain data (mappings, lists, scalars) from settings, for YAML and logging."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_data(v) for v in value]
    return value


def leaves(cls: type, prefix: str = ""):
    """``(dotted key, type, field)`` of every key of ``cls``; a mapping of sections (such as
    ``tags``) yields ``<name>`` in the key and then the section's own keys."""
    types = hints(cls)
    for field in dataclasses.fields(cls):
        key, tp = f"{prefix}{field.name}", types[field.name]
        inner = _section_type(tp)
        if inner is not None:
            yield key, tp, field
            yield from leaves(inner, f"{key}.")
            continue
        mapped = _mapped_section(tp)
        if mapped is not None:
            yield key, tp, field
            yield from leaves(mapped, f"{key}.<name>.")
            continue
        yield key, tp, field


def _section_type(tp: Any):
    """The dataclass of a (possibly optional) nested section, or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) is Union:
        classes = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return classes[0] if classes else None
    return None


def _mapped_section(tp: Any):
    """The dataclass ``X`` of ``dict[str, X]``, or None."""
    if typing.get_origin(tp) is dict:
        inner = typing.get_args(tp)[1]
        return inner if dataclasses.is_dataclass(inner) else None
    return None


def split_key(cls: type, key: str) -> list[str]:
    """The parts of the dotted ``key``, following the schema: inside a free-form mapping
    (``spark.conf``, ``sources.<name>.options``) the rest of the key is one key."""
    parts, out, tp = key.split("."), [], cls
    for i, part in enumerate(parts):
        if typing.get_origin(tp) is dict and _mapped_section(tp) is None:
            return out + [".".join(parts[i:])]
        out.append(part)
        inner = _section_type(tp)
        tp = (hints(inner).get(part) if inner is not None
              else _mapped_section(tp) if typing.get_origin(tp) is dict else None)
    return out
