"""Configuration: a YAML file, overridden by ``--set key=value`` with dotted keys."""
from __future__ import annotations

import copy
import os
from typing import Any, Iterable

import yaml

from persona.errors import PersonaError

_MISSING = object()


class Config:
    """A nested mapping read from YAML, addressed with dotted keys (``train.epochs``)."""

    def __init__(self, data: dict | None = None, path: str | None = None):
        self.data = copy.deepcopy(data or {})
        self.path = path

    @classmethod
    def load(cls, path: str, overrides: Iterable[str] = ()) -> "Config":
        """Read ``path`` and apply ``key=value`` overrides (values parsed as YAML)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise PersonaError(f"cannot read configuration {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise PersonaError(f"configuration {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise PersonaError(f"configuration {path} must be a mapping at the top level")
        config = cls(data, path)
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise PersonaError(f"--set expects key=value, got {item!r}")
            config.set(key.strip(), yaml.safe_load(raw) if raw != "" else "")
        return config

    def get(self, key: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif default is _MISSING:
                raise PersonaError(f"configuration key {key} is missing")
            else:
                return default
        return node

    def set(self, key: str, value: Any) -> None:
        node = self.data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value

    def section(self, key: str) -> dict:
        value = self.get(key, {})
        if not isinstance(value, dict):
            raise PersonaError(f"configuration key {key} must be a mapping")
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PersonaError(f"configuration key {key} must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise PersonaError(f"configuration key {key} must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PersonaError(f"configuration key {key} must be a number, got {value!r}")
        return float(value)

    def choice(self, key: str, choices, default: Any = _MISSING) -> str:
        """A value that must be one of ``choices``."""
        value = self.get(key, default)
        if value not in choices:
            raise PersonaError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def path_of(self, key: str, default: Any = _MISSING) -> str:
        """A path or URI from the configuration; local relative paths become absolute."""
        return resolve_path(str(self.get(key, default)))

    def flat(self) -> dict[str, Any]:
        """Every leaf as ``dotted.key: value`` (for logging parameters)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = node

        walk("", self.data)
        return out


def resolve_path(path: str) -> str:
    """Absolute local path for a relative one; URIs (``s3a://``, ``file:/``) unchanged."""
    if "://" in path or path.startswith("file:"):
        return path
    return os.path.abspath(os.path.expanduser(path))
