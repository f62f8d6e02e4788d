"""The one exception type a user sees: its message is printed as a single line."""


class PersonaError(Exception):
    """A problem with the input or configuration, reported without a traceback."""
