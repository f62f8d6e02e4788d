"""The one exception type a user sees (its message printed as a single line), and how
other exceptions (Java ones raised through py4j) are told apart and shortened."""
from __future__ import annotations

from contextlib import contextmanager


class PersonaError(Exception):
    """A problem with the input or configuration, reported without a traceback."""


# Set to print the full traceback of an error.
DEBUG_ENV = "PERSONA_DEBUG"
# Delta's commit conflicts: another writer committed to the table first.
DELTA_CONFLICT = "org.apache.spark.sql.delta.DeltaConcurrentModificationException"


def _java_throwable(exc: BaseException):
    """The Java exception behind a py4j or pyspark error, or None for a Python one."""
    return getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)


def java_causes(exc: BaseException) -> list:
    """The Java exception behind ``exc`` and its causes, outermost first."""
    chain, throwable = [], _java_throwable(exc)
    while throwable is not None and len(chain) < 50:
        chain.append(throwable)
        cause = throwable.getCause()
        throwable = None if cause is None or cause.equals(throwable) else cause
    return chain


def java_is(exc: BaseException, class_name: str) -> bool:
    """True when the Java exception behind ``exc``, or one of its causes, is a ``class_name``."""
    from py4j.java_gateway import is_instance_of
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    return gateway is not None and any(is_instance_of(gateway, t, class_name)
                                       for t in java_causes(exc))


def concurrent_write(exc: BaseException) -> bool:
    """True when ``exc`` is Delta's refusal to commit after another writer's commit."""
    return type(exc).__module__ == "delta.exceptions" or java_is(exc, DELTA_CONFLICT)


@contextmanager
def writing(table: str, root: str):
    """Turn Delta's refusal to commit ``table`` after another run's commit into one line."""
    try:
        yield
    except Exception as exc:
        if concurrent_write(exc):
            raise PersonaError(f"another run is writing {table} under lake.root={root}: "
                               f"try again when it ends") from None
        raise


def short_message(exc: BaseException) -> str:
    """One line for an unexpected exception: for a Java one, the first line of its
    innermost cause; for a Python one, its type and the first line of its message."""
    causes = java_causes(exc)
    if causes:
        text = str(causes[-1].toString())
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
