"""Every command of the README and of docs/ works as written.

The ``persona`` commands of the fenced code blocks are run once per session, in document
order, on small generated data, through :func:`persona.cli.main` in a scratch folder (``conf/``
linked to the repository's), with settings appended that keep them small: 300 users, two
epochs, one tag. Every other program in those blocks is listed in :data:`EXCLUDED` with the
reason it is not run here. Command synopses (``persona ... --conf FILE [--set ...]`` in
tables and text) are checked against the ``--help`` of the command they name.
"""
import contextlib
import glob
import io
import os
import re
import shlex

import numpy as np
import pandas as pd
import pytest
import yaml

from persona.cli import build_parser, main

pytestmark = pytest.mark.e2e

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = ["README.md", "docs/operations.md", "docs/architecture.md"]
DOCS += sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))
               if os.path.relpath(p, ROOT) not in DOCS)
# Programs of the documentation's code blocks that this test does not run, and why.
EXCLUDED = {
    "make": "builds the environment or runs the suite itself (`make demo` is `persona generate` "
            "+ `persona run`, both run here)",
    "spark-submit": "needs a Spark cluster and dist/: tests/integration/test_cluster.py",
    "airflow": "needs Airflow: tests/integration/test_airflow.py",
    "export": "sets the shell environment of the Airflow example",
    ".venv/bin/python": "the benchmarks of docs/results.md: measurements that take minutes "
                        "to hours (their JSON and page are checked by tests/test_results_page.py)",
}
USERS = 300
# Appended to every command that runs on the lake: small and quick.
SMALL = ["train.epochs=2", "segment.k_range=[2,5]", "segment.n_init=1",
         "evaluate.stability_runs=1", "privacy.min_segment_size=1",
         "tags={plan: {attribute: plan, epochs: 2}}"]


def code_lines(path: str, languages: tuple[str, ...] = ()) -> list[str]:
    """The lines of the fenced code blocks of ``path`` (of ``languages`` if given),
    continuations joined, comments cut."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        blocks = re.findall(r"^```([^\n]*)\n(.*?)^```", fh.read(), flags=re.M | re.S)
    lines = []
    for language, block in blocks:
        if languages and language.strip() not in languages:
            continue
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def commands() -> list[tuple[str, str]]:
    """(document, command) for every ``persona`` command of the code blocks, in order."""
    return [(doc, line) for doc in DOCS for line in code_lines(doc)
            if line.startswith("persona ")]


def synopses() -> list[tuple[str, str]]:
    """(document, text) of every inline ``persona ...`` command (tables and prose)."""
    found = []
    for doc in DOCS:
        with open(os.path.join(ROOT, doc), encoding="utf-8") as fh:
            text = re.sub(r"^```.*?^```", "", fh.read(), flags=re.M | re.S)
        found += [(doc, span) for span in re.findall(r"`(persona [^`]+)`", text)
                  if (doc, span) not in found]
    return found


def small_args(argv: list[str], lake: str, tmp: str) -> list[str]:
    """``argv`` made small, pointed at ``tmp``, its relative paths made absolute (Spark's JVM
    resolves them from the folder the tests started in, not from ``tmp``)."""
    if argv[0] == "generate":
        at = argv.index("--users") + 1 if "--users" in argv else None
        return argv[:at] + [str(USERS)] + argv[at + 1:] if at else argv + ["--users",
                                                                            str(USERS)]
    if "--help" in argv or argv[0] not in build_commands():
        return argv
    absolute = [in_tmp(a, tmp) if argv[i - 1] == "--set" else a for i, a in enumerate(argv)]
    conf = argv[argv.index("--conf") + 1] if "--conf" in argv else "conf/local.yaml"
    with open(os.path.join(tmp, conf), encoding="utf-8") as fh:
        sources = yaml.safe_load(fh).get("sources") or {}
    settings = [f"sources.{name}.path={os.path.join(tmp, s['path'])}"
                for name, s in sources.items() if "://" not in s.get("path", "://")]
    settings += [f"lake.root={lake}", f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
                 f"mlflow.artifact_location={tmp}/mlartifacts",
                 f"train.petastorm_cache={lake}-petastorm", *SMALL]
    return absolute + [a for s in settings for a in ("--set", s)]


def in_tmp(setting: str, tmp: str) -> str:
    """``key=value`` with a relative path under ``tmp`` (out/..., data/...) made absolute."""
    key, _, value = setting.partition("=")
    first = value.split("/")[0]
    if "/" in value and first and os.path.isdir(os.path.join(tmp, first)):
        return f"{key}={os.path.join(tmp, value)}"
    return setting


def build_commands() -> set[str]:
    """The subcommands that read a configuration."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {name for name, parser in sub.choices.items()
            if any(a.dest == "conf" for a in parser._actions)}


def write_feature_table(path: str) -> None:
    """The table of the bring-your-own-features example: customer, label, numeric columns."""
    rng = np.random.default_rng(0)
    label = np.arange(USERS) % 2
    frame = pd.DataFrame(rng.normal(3.0 * label[:, None], 1.0, (USERS, 4)),
                         columns=[f"x{i}" for i in range(4)])
    frame.insert(0, "customer", [f"c{i:04d}" for i in range(USERS)])
    frame["label"] = label
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frame.to_parquet(path, index=False)


@pytest.fixture(scope="session")
def documented_runs(spark, tmp_path_factory):
    """{(document, command): (exit code, stderr's last line)}, every command run once."""
    tmp = str(tmp_path_factory.mktemp("docs"))
    os.symlink(os.path.join(ROOT, "conf"), os.path.join(tmp, "conf"))
    write_feature_table(os.path.join(tmp, "data", "features.parquet"))
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        for doc, command in commands():
            argv = shlex.split(command)[1:]
            # A feature table of one's own replaces the generated users' features: its own lake.
            own = any(a.startswith("features.input.path=") for a in argv)
            lake = os.path.join(tmp, "byo-lake" if own else "lake")
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = main(small_args(argv, lake, tmp))
                except SystemExit as exc:  # argparse: usage errors and --help
                    code = exc.code
                except Exception as exc:  # a crash is reported by the command's test
                    code = 1
                    print(f"{type(exc).__name__}: {exc}", file=err)
            lines = [l for l in err.getvalue().splitlines() if l.strip()]
            results[(doc, command)] = (code, lines[-1] if lines else "")
    return results


@pytest.mark.parametrize("doc, command", commands())
def test_documented_command_works(documented_runs, doc, command):
    code, last = documented_runs[(doc, command)]
    assert code in (0, None), f"{doc}: `{command}` exited {code}: {last}"


def test_the_documentation_has_commands_to_run():
    documented = {shlex.split(c)[1] for _, c in commands()}
    assert {"generate", "run", "evaluate", "report"} <= documented


def test_every_other_program_is_excluded_with_a_reason():
    others = {line.split()[0] for doc in DOCS for line in code_lines(doc, ("bash", "sh"))
              if not line.startswith("persona ")}
    assert others <= set(EXCLUDED), f"not run and not excluded: {sorted(others - set(EXCLUDED))}"


@pytest.mark.parametrize("doc, synopsis", synopses())
def test_synopsis_names_a_command_and_its_options(doc, synopsis, capsys):
    words = synopsis.split()
    names = words[1].split("|") if not words[1].startswith("-") else []
    names = [n.strip("\\") for n in names]
    if names == ["<cmd>"]:
        names = sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)
    options = {w.strip("[]") for w in words[2:] if re.fullmatch(r"\[?--[a-z-]+\]?", w)}
    for name in names or [None]:
        with pytest.raises(SystemExit):
            main(([name] if name else []) + ["--help"])
        usage = capsys.readouterr().out
        missing = {o for o in options if o not in usage}
        assert not missing, f"{doc}: `{synopsis}`: {name or 'persona'} has no {missing}"
