"""The README and docs/ describe the code as it is: every package in the README's layout, no
path or module that does not exist, a README short enough to read."""
import glob
import os
import re

import pytest

pytestmark = pytest.mark.unit

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FILE_TYPES = {"zip", "whl", "yaml", "json", "html", "db"}
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                              for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        return fh.read()


def test_readme_layout_lists_every_package_on_its_own_line():
    layout = read("README.md").split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^lib/persona/(\w+)/\s", layout, flags=re.M)
    packages = sorted(os.path.basename(os.path.dirname(p)) for p in
                      glob.glob(os.path.join(ROOT, "lib", "persona", "*", "__init__.py")))
    assert sorted(listed) == packages


def test_readme_is_at_most_12_kb():
    assert len(read("README.md").encode("utf-8")) <= 12 * 1024


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_and_module_named_exists(doc):
    text = read(doc)
    # Paths of this repository (not dist/conf/... nor $PERSONA_HOME/conf/... of a cluster).
    paths = set(re.findall(r"(?<![\w/$.}-])((?:lib/persona|benchmarks|jobs|dags|conf|notebooks"
                           r"|tests)/[\w./-]*\w)", text))
    modules = {m for m in re.findall(r"`(persona(?:\.\w+)+)`", text)
               if m.rsplit(".", 1)[1] not in FILE_TYPES}
    missing = [p for p in paths if "<" not in p and not os.path.exists(os.path.join(ROOT, p))]
    for name in modules:
        parts = name.split(".")
        # The longest prefix that is a package or module; what follows must be defined in it.
        for cut in range(len(parts), 0, -1):
            base = os.path.join(ROOT, "lib", *parts[:cut])
            if os.path.isdir(base) or os.path.exists(base + ".py"):
                source = base + ".py" if os.path.exists(base + ".py") else \
                    os.path.join(base, "__init__.py")
                rest = parts[cut:]
                if rest and not re.search(rf"^(def|class) {rest[0]}\b|^{rest[0]} =",
                                          read(source), flags=re.M):
                    missing.append(name)
                break
        else:
            missing.append(name)
    assert not missing, f"{doc} names what does not exist: {sorted(missing)}"
