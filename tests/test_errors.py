"""How exceptions become one line: Python ones here; Java ones in tests/test_cli.py."""
import pytest

from persona.errors import PersonaError, concurrent_write, short_message, writing
from persona.ingest.files import display_path

pytestmark = pytest.mark.unit


def test_short_message_is_the_type_and_first_line():
    assert short_message(ValueError("bad value\n  detail")) == "ValueError: bad value"
    assert short_message(KeyError()) == "KeyError"


def test_writing_leaves_other_errors_alone():
    assert not concurrent_write(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        with writing("bronze/events", "/lake"):
            raise OSError("disk full")
    with pytest.raises(PersonaError, match="^bad$"):
        with writing("bronze/events", "/lake"):
            raise PersonaError("bad")


def test_display_path_is_relative_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(f"file://{tmp_path}/out/x/a.csv.gz") == "out/x/a.csv.gz"
    assert display_path("file:/elsewhere/a.csv.gz") == "/elsewhere/a.csv.gz"
    assert display_path("s3a://bucket/raw/a.csv.gz") == "s3a://bucket/raw/a.csv.gz"
