"""Small segments are left out of everything Persona publishes (exports, profiles, report,
run summary): fewer than ``privacy.min_segment_size`` users could single people out."""
from __future__ import annotations

MIN_SIZE = "privacy.min_segment_size"


def suppressed(size: int, minimum: int) -> bool:
    """True when a segment of ``size`` users is too small to publish."""
    return size < minimum


def note(segment: int, size: int, minimum: int, outcome: str = "not shown") -> str:
    """The line that says a segment was left out, without who is in it."""
    return f"segment {segment}: {size} users, below {MIN_SIZE} {minimum}, {outcome}"
