"""The pseudonymization key: from an environment variable, else a file (made on first use
when ``privacy.create_key`` is on). The key is never logged."""
from __future__ import annotations

import os
import secrets

from persona.errors import PersonaError
from persona.logs import get_logger

MIN_BYTES = 16


def load_key(config, purpose: str = "privacy.pseudonymize is on") -> bytes:
    """The key of ``privacy.*``: the text of ``$<key_env>``, else of ``key_file``
    (surrounding white space removed), as UTF-8 bytes; at least 16 bytes. ``purpose``
    starts the error when there is none."""
    env = str(config.get("privacy.key_env"))
    text = os.environ.get(env, "").strip()
    where = f"${env}"
    if not text and config.get("privacy.key_file"):
        path = os.path.expanduser(str(config.get("privacy.key_file")))
        where = f"privacy.key_file {path}"
        if not os.path.exists(path) and config.get("privacy.create_key"):
            _create(path)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read().strip()
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise PersonaError(f"privacy.key_file: cannot read {path}: {exc.strerror}") from None
    if not text:
        file = config.get("privacy.key_file")
        hint = f"write one to {os.path.expanduser(file)} (privacy.key_file)" if file \
            else "privacy.key_file"
        raise PersonaError(f"{purpose} but no key was found: set ${env} or "
                           f"{hint}")
    key = text.encode("utf-8")
    if len(key) < MIN_BYTES:
        raise PersonaError(f"the key in {where} is too short: {len(key)} bytes, at least "
                           f"{MIN_BYTES} are needed (e.g. 64 hex digits)")
    return key


def _create(path: str) -> None:
    """A random 32-byte key, as hex, in a new file only its owner can read."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    get_logger("privacy").info("made a new pseudonymization key in %s (privacy.create_key: "
                               "a demo key, never for real data)", path)
