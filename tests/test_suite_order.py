"""The suite's own scheduling (tests/conftest.py): the longest files go to the xdist workers first."""

from __future__ import annotations

import pathlib
from types import SimpleNamespace

import conftest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_timed_file_exists():
    """A renamed or split file must take its number along, or it would silently lose its place."""
    missing = [name for name in conftest.FILE_SECONDS if not (ROOT / name).is_file()]
    assert not missing, f"tests/conftest.py FILE_SECONDS names files that do not exist: {missing}"


def test_xdist_keeps_the_collection_order(pytestconfig):
    """pytest-xdist's default hands out the files with the most tests first; conftest turns that off."""
    if hasattr(pytestconfig.option, "loadscopereorder"):  # the [dev] extra installs pytest-xdist
        assert pytestconfig.option.loadscopereorder is False


def _item(name: str, slow: bool = False) -> SimpleNamespace:
    return SimpleNamespace(path=ROOT / name, get_closest_marker=lambda marker: object() if slow else None,
                           name=name)


def test_files_go_out_longest_first_and_keep_their_tests_together(monkeypatch):
    monkeypatch.setattr(conftest, "FILE_SECONDS", {"tests/test_filters_run.py": 115, "tests/app/test_run.py": 55,
                                                   "tests/test_mo_rps.py": 32})
    items = [_item("tests/test_config.py"), _item("tests/test_mo_rps.py", slow=True),
             _item("tests/nn/test_layers.py"), _item("tests/app/test_run.py"),
             _item("tests/app/test_run.py", slow=True), _item("tests/test_filters_run.py"),
             _item("tests/runners/test_server_security.py", slow=True)]
    config = SimpleNamespace(rootpath=ROOT)
    conftest.pytest_collection_modifyitems(None, config, items)
    order = [item.path.relative_to(ROOT).as_posix() for item in items]
    assert order == ["tests/test_filters_run.py", "tests/app/test_run.py", "tests/app/test_run.py",
                     "tests/test_mo_rps.py",  # timed, shorter
                     "tests/runners/test_server_security.py",  # untimed but holds a slow test
                     "tests/test_config.py", "tests/nn/test_layers.py"]  # the rest in collection order
