"""docs/configuration.md, generated from the schema: ``python -m persona.config.docs``."""
from __future__ import annotations

import dataclasses
import json

from persona.config.fields import describe, leaves
from persona.config.schema import Settings

HEADER = """# Configuration

Every key of a Persona configuration (YAML, `--conf FILE`), with its type, its default and
what it does. Any key can be overridden on the command line with its dotted path
(`--set segment.k=6`); `--set KEY=null` removes a key (back to its default) or a whole
source (`--set sources.content=null`). Unknown keys and wrong values stop the command with
one line naming the key. `persona config --conf FILE [--set ...]` prints the effective
configuration, defaults filled in.

Generated from `lib/persona/config/schema.py` by `make docs`; do not edit by hand.

| key | type | default | meaning |
|---|---|---|---|
"""


def _default(field: dataclasses.Field) -> str:
    if dataclasses.is_dataclass(field.type) or field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        if dataclasses.is_dataclass(value):
            return ""
    else:
        value = field.default
    return "none" if value is None else f"`{json.dumps(value)}`"


def markdown() -> str:
    """The configuration reference, as Markdown."""
    rows = []
    for key, tp, field in leaves(Settings):
        kind = describe(tp).replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | {_default(field)} | "
                    f"{field.metadata.get('doc', '')} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
