"""Input files: which compressed file is unreadable when Spark fails to read a source."""
from __future__ import annotations

import os
from contextlib import contextmanager

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from persona.errors import PersonaError, java_is
from persona.ingest.sources import SourceSpec

# Codec names for the message, by the extension Hadoop's codecs recognise.
CODEC_NAMES = {".gz": "gzip", ".bz2": "bzip2", ".deflate": "deflate", ".lz4": "lz4",
               ".snappy": "snappy", ".zst": "zstd"}


def display_path(uri: str) -> str:
    """A file URI as the user would write it: local files relative to the working
    directory when under it, other URIs unchanged."""
    if not uri.startswith("file:"):
        return uri
    path = "/" + uri[len("file:"):].lstrip("/")
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


@contextmanager
def reading(spark: SparkSession, spec: SourceSpec):
    """Turn Spark's failure on a truncated or corrupt compressed file of ``spec`` into one
    line naming the file; the files are checked only once a read has failed."""
    try:
        yield
    except PersonaError:
        raise
    except Exception as exc:
        if not java_is(exc, "java.io.IOException"):
            raise
        files = spark.read.format("text").load(spec.path).inputFiles()
        found = corrupt_file(spark, files)
        if found is None:
            raise
        raise PersonaError(f"sources.{spec.name}: cannot read {display_path(found[0])}: "
                           f"truncated or corrupt {found[1]} file") from None


def corrupt_file(spark: SparkSession, files: list[str]) -> tuple[str, str] | None:
    """The first compressed file of ``files`` that does not decompress to its end, with
    its codec's name; None when all do. Each file is read through Hadoop on the driver."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    codecs = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
    for uri in files:
        path = jvm.org.apache.hadoop.fs.Path(uri)
        codec = codecs.getCodec(path)
        if codec is None:
            continue
        stream = None
        try:
            stream = codec.createInputStream(path.getFileSystem(conf).open(path))
            jvm.org.apache.commons.io.IOUtils.consume(stream)
        except Py4JJavaError:  # the Java IOException of a truncated or corrupt file
            extension = str(codec.getDefaultExtension())
            return uri, CODEC_NAMES.get(extension, extension.lstrip("."))
        finally:
            if stream is not None:
                stream.close()
    return None
