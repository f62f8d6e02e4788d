"""Scale: every stage at growing numbers of generated users, beside a plain Spark aggregation
and DuckDB over the same raw CSV.

    .venv/bin/python benchmarks/scale.py [--users 10000,100000] [--out out/bench]

For each number of users: `persona generate`, then in one Spark session (``spark.*`` of the
configuration, ``local[*]`` by default) the references and every stage of `persona run`:

- plain Spark: ``spark.read.csv`` of the events → one ``groupBy(user_id)`` with the event
  count, recency, sessions, spend, the share of each of the 12 most frequent event types and
  categories, four day-part shares and the weekend share → parquet;
- DuckDB: the same query in SQL over the same files → parquet;
- Persona ingest, features with only the groups of the same kind of columns (behaviour,
  event_mix, category, time), then features with the configured groups and the other stages.

Each gets its wall time and events per second; each stage, the peak resident memory of the
driver's Python process and of its JVM, and whether Spark fell back from generated code
(its log, at WARN during the features stage, names a method over 64 KB). The growth exponent
of each stage's time is log(t2 / t1) / log(n2 / n1) between the two largest sizes. Written to
benchmarks/results/ as JSON (``benchmarks/render.py`` puts it in docs/results.md).
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager, nullcontext

import psutil
from pyspark.sql import functions as F

from persona.config import Config
from persona.generate import generate
from persona.logs import setup_logging
from persona.pipeline import run_single
from persona.runtime.spark import get_spark
from persona.stages import PIPELINE, enabled
from record import timed, write_result

SAME_KIND = ["behaviour", "event_mix", "category", "time"]
LEVELS = 12
# Lines of Spark's log that say generated code was too large and interpreted code ran instead.
FALLBACK_SIGNS = ("grows beyond 64 KB", "Whole-stage codegen disabled", "failed to compile")


class PeakMemory:
    """Resident memory of this Python process and of its JVM (a ``java`` child), sampled
    every 0.2 s; :meth:`take` returns the peaks in MB since the last call."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.peaks = [0, 0]
        self.running = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _jvm(self) -> int:
        return sum(p.memory_info().rss for p in self.me.children(recursive=True)
                   if "java" in p.name())

    def _sample(self) -> None:
        while self.running:
            try:
                now = [self.me.memory_info().rss, self._jvm()]
            except psutil.Error:
                now = [0, 0]
            self.peaks = [max(a, b) for a, b in zip(self.peaks, now)]
            time.sleep(0.2)

    def take(self) -> tuple[float, float]:
        peaks, self.peaks = self.peaks, [0, 0]
        return round(peaks[0] / 2**20), round(peaks[1] / 2**20)


@contextmanager
def spark_log(spark, path: str):
    """Spark's log (fd 2, at WARN) into ``path`` while the block runs, then echoed."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as fh:
        os.dup2(fh.fileno(), 2)
    spark.sparkContext.setLogLevel("WARN")
    try:
        yield
    finally:
        spark.sparkContext.setLogLevel("ERROR")
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def plain_spark(spark, events: str, out: str) -> int:
    """The one-pass aggregation in Spark; returns the number of users."""
    raw = spark.read.csv(events, header=True)
    df = raw.select("user_id", "event_type", "category", "session_id",
                    F.to_timestamp("event_time", "yyyy-MM-dd HH:mm:ss").alias("t"),
                    F.col("amount").cast("double").alias("amount"))
    as_of = df.agg(F.max("t")).first()[0]
    top = {c: [r[0] for r in df.where(F.col(c).isNotNull()).groupBy(c).count()
               .orderBy(F.desc("count"), c).limit(LEVELS).collect()]
           for c in ("event_type", "category")}
    share = lambda cond: F.avg(F.when(cond, 1.0).otherwise(0.0))  # noqa: E731
    hour = F.hour("t")
    aggs = [F.count("*").alias("events"),
            F.datediff(F.lit(as_of), F.max("t")).alias("recency_days"),
            F.countDistinct("session_id").alias("sessions"),
            F.sum(F.when(F.col("event_type") == "purchase", F.col("amount"))).alias("spend"),
            *[share(F.col(c) == v).alias(f"{c}_{i}") for c, vs in top.items()
              for i, v in enumerate(vs)],
            *[share((hour >= lo) & (hour < lo + 6)).alias(f"hours_{lo}") for lo in (0, 6, 12, 18)],
            share(F.dayofweek("t").isin(1, 7)).alias("weekend")]
    df.groupBy("user_id").agg(*aggs).write.mode("overwrite").parquet(out)
    return spark.read.parquet(out).count()


def duckdb_query(events: str, out: str) -> int:
    """The same aggregation in DuckDB; returns the number of users."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE VIEW raw AS SELECT user_id, event_type, category, session_id, "
                f"try_strptime(event_time, '%Y-%m-%d %H:%M:%S') AS t, "
                f"TRY_CAST(amount AS DOUBLE) AS amount "
                f"FROM read_csv('{events}/*.csv', header = true, all_varchar = true)")
    as_of = con.execute("SELECT max(t) FROM raw").fetchone()[0]
    shares = []
    for c in ("event_type", "category"):
        top = [r[0] for r in con.execute(
            f"SELECT {c}, count(*) n FROM raw WHERE {c} IS NOT NULL GROUP BY {c} "
            f"ORDER BY n DESC, {c} LIMIT {LEVELS}").fetchall()]
        shares += [f"avg(CASE WHEN {c} = '{v}' THEN 1.0 ELSE 0.0 END) AS {c}_{i}"
                   for i, v in enumerate(top)]
    shares += [f"avg(CASE WHEN hour(t) >= {lo} AND hour(t) < {lo + 6} THEN 1.0 ELSE 0.0 END) "
               f"AS hours_{lo}" for lo in (0, 6, 12, 18)]
    con.execute(
        f"COPY (SELECT user_id, count(*) AS events, "
        f"date_diff('day', max(t), TIMESTAMP '{as_of}') AS recency_days, "
        f"count(DISTINCT session_id) AS sessions, "
        f"sum(CASE WHEN event_type = 'purchase' THEN amount END) AS spend, {', '.join(shares)}, "
        f"avg(CASE WHEN dayofweek(t) IN (0, 6) THEN 1.0 ELSE 0.0 END) AS weekend "
        f"FROM raw GROUP BY user_id) TO '{out}' (FORMAT PARQUET)")
    return con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]


def one_size(users: int, args, memory: PeakMemory) -> dict:
    out = os.path.abspath(os.path.join(args.out, f"scale-{users}"))
    shutil.rmtree(out, ignore_errors=True)
    data = os.path.join(out, "data")
    seconds, counts = timed(generate, data, users, 0)
    events = counts["events"]
    print(f"{users:,} users: {events:,} events generated in {seconds:.0f} s", flush=True)
    config = Config.load(args.conf, [
        f"lake.root={out}/lake", f"train.petastorm_cache={out}/petastorm",
        f"mlflow.tracking_uri=sqlite:///{out}/mlflow.db",
        f"mlflow.artifact_location={out}/mlartifacts",
        *[f"sources.{s}.path={data}/{s}" for s in ("events", "users", "content")],
        *args.overrides])
    spark = get_spark(config)
    result = {"users": users, "events": events, "seconds": {}, "memory": {}, "fallback": {}}

    def record(name: str, seconds: float) -> None:
        result["seconds"][name] = round(seconds, 1)
        result["memory"][name] = memory.take()
        print(f"  {name:<22} {seconds:7.1f} s  {events / seconds:>10,.0f} events/s  "
              f"peak MB (python, JVM) {result['memory'][name]}", flush=True)

    memory.take()
    record("plain Spark", timed(plain_spark, spark, f"{data}/events", f"{out}/plain")[0])
    record("DuckDB", timed(duckdb_query, f"{data}/events", f"{out}/duckdb.parquet")[0])
    groups = config.get("features.groups")
    for name, module in PIPELINE.items():
        if not enabled(module, config):
            continue
        runs = [("features, same kind", SAME_KIND), ("features", groups)] \
            if name == "features" else [(name, None)]
        for label, chosen in runs:
            if chosen is not None:
                config.set("features.groups", chosen)
            log = os.path.join(out, f"{label.replace(' ', '_').replace(',', '')}.log")
            with spark_log(spark, log) if chosen is not None else nullcontext():
                seconds, _ = timed(run_single, name, config)
            if chosen is not None:
                with open(log) as fh:
                    text = fh.read()
                sys.stderr.write(text)
                result["fallback"][label] = sum(text.count(s) for s in FALLBACK_SIGNS)
            record(label, seconds)
    return result


def exponent(small: dict, large: dict, stage: str) -> float:
    return math.log(large["seconds"][stage] / small["seconds"][stage]) / \
        math.log(large["users"] / small["users"])


def tables(results: list[dict]) -> list[dict]:
    """Throughput against the references, every stage's time and memory, and growth."""
    throughput = []
    for r in results:
        s, n = r["seconds"], r["events"]
        same = s["ingest"] + s["features, same kind"]
        full = s["ingest"] + s["features"]
        throughput.append([f"{r['users']:,}", f"{n:,}", round(n / s["plain Spark"]),
                           round(n / s["DuckDB"]), round(n / same), round(n / full),
                           round(s["plain Spark"] / same, 2), round(s["plain Spark"] / full, 2),
                           sum(r["fallback"].values())])
    stages = list(results[0]["seconds"])
    times = []
    for stage in stages:
        row = [stage, *[r["seconds"][stage] for r in results]]
        if len(results) > 1:
            row.append(round(exponent(results[-2], results[-1], stage), 2))
        times.append(row)
    total = ["whole pipeline", *[round(sum(v for k, v in r["seconds"].items()
                                          if k not in ("plain Spark", "DuckDB",
                                                       "features, same kind")), 1)
                                 for r in results]]
    memory = [[f"{r['users']:,}", max(m[0] for m in r["memory"].values()),
               max(m[1] for m in r["memory"].values())] for r in results]
    sizes = [f"{r['users']:,} users s" for r in results]
    return [
        {"title": "Events per second over the same raw CSV (ingest + features for Persona)",
         "columns": ["users", "events", "plain Spark", "DuckDB",
                     "Persona, same kind of columns", "Persona, all groups",
                     "ratio to plain Spark, same kind", "ratio, all groups",
                     "code-generation fallbacks"],
         "rows": throughput},
        {"title": "Wall time of each step",
         "columns": ["step", *sizes, *(["growth exponent"] if len(results) > 1 else [])],
         "rows": times + [total + ([""] if len(results) > 1 else [])]},
        {"title": "Peak resident memory of the driver (MB, over every step)",
         "columns": ["users", "Python", "JVM"], "rows": memory},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,100000",
                        help="comma-separated numbers of users, smallest first")
    parser.add_argument("--out", default="out/bench")
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    setup_logging()
    started = time.time()
    memory = PeakMemory()
    results = [one_size(int(n), args, memory) for n in args.users.split(",")]
    memory.running = False
    write_result("scale", tables(results), time.time() - started,
                 {"results": results, "conf": args.conf, "overrides": args.overrides})


if __name__ == "__main__":
    main()
