"""Configuration: a YAML file, overridden by ``--set key=value`` with dotted keys, parsed once
into the typed settings of :mod:`persona.config.schema` (defaults filled in, every key and
value checked)."""
from __future__ import annotations

import copy
import os
from typing import Any, Iterable

import yaml

from persona.config.fields import parse, split_key, suggestion, to_data
from persona.config.schema import Settings
from persona.errors import PersonaError


class Config:
    """The validated configuration, addressed with dotted keys (``train.epochs``)."""

    def __init__(self, data: dict | None = None, path: str | None = None):
        self._given = copy.deepcopy(data or {})
        self.path = path
        self.settings: Settings = parse(Settings, self._given)

    @classmethod
    def load(cls, path: str, overrides: Iterable[str] = ()) -> "Config":
        """Read ``path`` and apply ``key=value`` overrides (values parsed as YAML; ``null``
        removes the key, which takes its default again)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise PersonaError(f"cannot read configuration {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise PersonaError(f"configuration {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise PersonaError(f"configuration {path} must be a mapping at the top level")
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise PersonaError(f"--set expects key=value, got {item!r}")
            value = yaml.safe_load(raw) if raw != "" else ""
            _refuse_empty_entries(key.strip(), value)
            _assign(data, split_key(Settings, key.strip()), value)
        return cls(data, path)

    @property
    def data(self) -> dict:
        """The effective configuration as plain data, defaults filled in."""
        return to_data(self.settings)

    def get(self, key: str) -> Any:
        """The value of a dotted key (a section is its typed settings)."""
        node: Any = self.settings
        walked = []
        for part in split_key(Settings, key):
            if node is None:  # inside a section that is not set
                return None
            if isinstance(node, dict):
                if part not in node:
                    return None
                node = node[part]
            elif hasattr(node, "__dataclass_fields__") and part in node.__dataclass_fields__:
                node = getattr(node, part)
            else:
                known = getattr(node, "__dataclass_fields__", {})
                prefix = ".".join(walked)
                raise PersonaError(f"unknown configuration key {key}"
                                   f"{suggestion(part, known, f'{prefix}.' if prefix else '')}")
            walked.append(part)
        return node

    def set(self, key: str, value: Any) -> None:
        """Set a dotted key (``None`` removes it) and check the whole configuration again."""
        given = copy.deepcopy(self._given)
        _assign(given, split_key(Settings, key), value)
        self.settings = parse(Settings, given)
        self._given = given

    def section(self, key: str) -> dict:
        """A section as plain data, without the entries that are not set."""
        return {k: v for k, v in to_data(self.get(key)).items() if v is not None}

    def path_of(self, key: str) -> str:
        """A path or URI from the configuration; local relative paths become absolute."""
        value = self.get(key)
        if not value:
            raise PersonaError(f"configuration key {key} is missing")
        return resolve_path(str(value))

    def flat(self) -> dict[str, Any]:
        """Every leaf as ``dotted.key: value`` (for logging parameters)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict) and node:
                for k, v in node.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = node

        walk("", self.data)
        return out

    def to_yaml(self) -> str:
        """The effective configuration as YAML."""
        return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None, width=100)


def _refuse_empty_entries(key: str, value: Any) -> None:
    """A mapping given with ``--set`` must give every entry a value: YAML reads
    ``{outlook:2}`` (no space after the colon) as the key ``outlook:2`` with none."""
    if isinstance(value, dict):
        for name, entry in value.items():
            if entry is None:
                raise PersonaError(f"--set {key}: {name} has no value (YAML needs a space after "
                                   f"the colon, e.g. {{outlook: 2}})")
            _refuse_empty_entries(f"{key}.{name}", entry)


def _assign(data: dict, parts: list[str], value: Any) -> None:
    """Set ``parts`` (a split dotted key) in the nested mapping ``data``; None removes it."""
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if value is None:
                return
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def resolve_path(path: str) -> str:
    """Absolute local path for a relative one; URIs (``s3a://``, ``file:/``) unchanged."""
    if "://" in path or path.startswith("file:"):
        return path
    return os.path.abspath(os.path.expanduser(path))
