"""The docs and the README stay true: examples run, commands parse, the config reference matches default.toml.

Every ```python block of README.md and docs/ runs (mktestdocs; the blocks of one page in
sequence, in one namespace, in a temporary folder). A block that cannot run here (real
assets, a finished run, the network) is written ```{.python .notest}. `mkdocs build
--strict` (run by `make test` after pytest) checks the site's links and API reference.
"""

from __future__ import annotations

import pathlib
import re
import runpy
import shlex
import tomllib
from functools import partial

import pytest
from conftest import new_mlflow_store

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
MARKDOWN = [ROOT / "README.md", *PAGES]
DEFAULT_TOML = ROOT / "evoprune_tf" / "configs" / "default.toml"
RUNNABLE = "```python"
SKIPPED = "```{.python .notest}"


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def _fences(text: str) -> list[tuple[str, str]]:
    """(opening line, body) of every fenced block, in order."""
    blocks, opening, body = [], None, []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```") and opening is None:
            opening, body = stripped, []
        elif stripped.startswith("```") and opening is not None:
            blocks.append((opening, "\n".join(body)))
            opening = None
        elif opening is not None:
            body.append(line)
    return blocks


def test_the_docs_exist_and_the_readme_is_a_guide():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 400, "README.md is a guide: at most 400 lines (the rest goes to docs/)"
    assert "make demo" in readme and "make test" in readme
    for page in ("index.md", "configuration.md", "api.md", "layout.md", "results.md", "extending.md"):
        assert (DOCS / page).is_file(), page
    for method in ("evoprunedeeptl", "mo-evoprunedeeptl", "deep-pruning-es", "tascnet", "baselines"):
        assert (DOCS / "methods" / f"{method}.md").is_file(), method


@pytest.mark.parametrize("path", MARKDOWN, ids=_rel)
def test_python_fences_are_either_runnable_or_marked(path):
    """No example is skipped by accident: ```py, ```python3, ```Python... are refused."""
    for opening, _ in _fences(path.read_text()):
        if "py" in opening.lower():
            assert opening in (RUNNABLE, SKIPPED), (
                f"{_rel(path)}: fence {opening!r}; expected {RUNNABLE!r} (runs in the tests) or {SKIPPED!r}"
            )


@pytest.mark.parametrize(
    "path", [p for p in MARKDOWN if any(o == RUNNABLE for o, _ in _fences(p.read_text()))], ids=_rel
)
def test_python_examples_run(path, tmp_path, monkeypatch):
    from mktestdocs import check_md_file

    import operators.registry as registry

    monkeypatch.chdir(tmp_path)  # whatever an example writes stays in a temporary folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_mlflow_store(tmp_path))
    saved = {kind: dict(entries) for kind, entries in registry._REGISTRY.items()}
    try:
        check_md_file(fpath=path, memory=True)
    finally:  # operators a page registers do not leak into other tests
        for kind, entries in saved.items():
            registry._REGISTRY[kind].clear()
            registry._REGISTRY[kind].update(entries)


def _shell_commands(text: str) -> list[str]:
    """The commands of every ```sh block, continuation lines joined, comments dropped."""
    commands = []
    for opening, body in _fences(text):
        if opening not in ("```sh", "```bash"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _documented_commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in MARKDOWN:
        for line in _shell_commands(path.read_text()):
            words = shlex.split(line, comments=False)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words:
                out.append((_rel(path), words))
    return out


def _inline_commands() -> list[tuple[str, list[str]]]:
    """`evoprune SUBCOMMAND ARGS` in inline code (also across a line break), without placeholders."""
    out = []
    for path in MARKDOWN:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for span in re.findall(r"`(evoprune [^`]+)`", text):
            words = span.split()
            if len(words) > 2 and not any(mark in span for mark in ("...", "<", "[", "|")):
                out.append((_rel(path), words))
    return out


def test_documented_evoprune_commands_parse():
    """Every `evoprune ...` command of the README and the docs is accepted by the real parser."""
    from evoprune_tf.app.cli import build_parser

    parser = build_parser()
    checked = 0
    for page, words in [*_documented_commands(), *_inline_commands()]:
        if pathlib.Path(words[0]).name != "evoprune":
            continue
        argv = words[1:]
        if argv[:1] == ["bench"]:
            continue  # `evoprune bench` hands everything to benchmarks/fitness.py
        try:
            parser.parse_args(argv)
        except SystemExit as exit_:
            if exit_.code != 0:  # 0: a documented --help
                pytest.fail(f"{page}: `{' '.join(words)}` does not parse (exit {exit_.code})")
        checked += 1
    assert checked >= 30


def _help_of(entry: str, capsys) -> str:
    """The --help text of an experiments/*.py script or of ``python -m evoprune_tf.app.tascnet_run``."""
    from evoprune_tf.app.scripts import experiment_main
    from evoprune_tf.app.tascnet_run import tascnet_main

    if entry == "evoprune_tf.app.tascnet_run":
        main = tascnet_main
    else:
        namespace = runpy.run_path(str(ROOT / entry), run_name="docs_check")
        image_set = namespace.get("IMAGE_SET")
        main = image_set.main if image_set is not None else partial(experiment_main, namespace["DATASET"])
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


def test_documented_script_options_exist(capsys):
    """Every option given to an experiments/*.py script or the TASCNet module in the docs is in its --help."""
    wanted: dict[str, set[str]] = {}
    for _, words in _documented_commands():
        entry = next((w for w in words if w.startswith("experiments/") and w.endswith(".py")), None)
        if "-m" in words and words.index("-m") + 1 < len(words):
            module = words[words.index("-m") + 1]
            entry = module if module == "evoprune_tf.app.tascnet_run" else entry
        if entry is None:
            continue
        options = {w.split("=", 1)[0] for w in words if w.startswith("--")}
        wanted.setdefault(entry, set()).update(options)
    assert len(wanted) >= 5 and "evoprune_tf.app.tascnet_run" in wanted
    for entry, options in sorted(wanted.items()):
        help_text = _help_of(entry, capsys)
        missing = sorted(o for o in options if o not in help_text)
        assert not missing, f"{entry} is documented with {missing}, which its --help does not list"


def _reference_rows() -> dict[str, set[str]]:
    """Section -> the keys in the first column of its table on docs/configuration.md."""
    rows: dict[str, set[str]] = {}
    section = None
    for line in (DOCS / "configuration.md").read_text().splitlines():
        heading = re.match(r"^## (?:\[(\w+)\]|(Top level))$", line)
        if heading:
            section = heading.group(1) or ""
            rows[section] = set()
        elif line.startswith("## "):
            section = None
        elif section is not None:
            key = re.match(r"^\| `(\w+)` \|", line)
            if key:
                rows[section].add(key.group(1))
    return rows


def _default_keys() -> dict[str, set[str]]:
    data = tomllib.loads(DEFAULT_TOML.read_text())
    keys = {"": {k for k, v in data.items() if not isinstance(v, dict)}}
    for name, value in data.items():
        if isinstance(value, dict):
            keys[name] = set(value)
    return keys


def test_configuration_reference_matches_default_toml():
    documented, defaults = _reference_rows(), _default_keys()
    missing = [f"{s + '.' if s else ''}{k}" for s, ks in defaults.items() for k in sorted(ks - documented.get(s, set()))]
    stale = [f"{s + '.' if s else ''}{k}" for s, ks in documented.items() for k in sorted(ks - defaults.get(s, set()))]
    assert not missing, f"docs/configuration.md lacks rows for {missing} (keys of default.toml)"
    assert not stale, f"docs/configuration.md documents {stale}, which default.toml does not have"


def _anchors(page: pathlib.Path) -> set[str]:
    """The heading anchors of a page, slugged as Python-Markdown's toc does."""
    slugs = set()
    for opening_line in page.read_text().splitlines():
        heading = re.match(r"^#+ (.*)$", opening_line)
        if heading:
            text = re.sub(r"[^\w\s-]", "", heading.group(1).replace("`", "")).strip().lower()
            slugs.add(re.sub(r"[-\s]+", "-", text))
    return slugs


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the docs"
    broken = []
    for link in local:
        target, _, anchor = link.partition("#")
        path = ROOT / target
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(link)
    assert not broken, f"README.md links to missing files or headings: {broken}"
