"""One broken plugin never breaks the others: each way a plugin can be broken, installed as a real
distribution (a dist-info folder with an entry point on PYTHONPATH, found by importlib.metadata) and
exercised through the real `zoo` command."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

import zoo
from conftest import zoo_cmd

PLUGINS = {
    # distribution: (module source, what `zoo stages` must say about it)
    "import_error": ("raise ImportError('no module named tensorflux')", "failed to load: ImportError: no module named tensorflux"),
    "hook_raises": ("""
        import zoo

        @zoo.hookimpl
        def zoo_register_stages():
            raise RuntimeError('the registry server is down')
    """, "failed in zoo_register_stages: RuntimeError: the registry server is down"),
    "wrong_type": ("""
        import zoo
        from zoo.stages.columns import Select

        @zoo.hookimpl
        def zoo_register_stages():
            return Select  # a class, not a list of classes
    """, "it must return a list of stage classes"),
    "duplicate": ("""
        import zoo
        from zoo.stages.columns import Select

        class MySelect(Select):
            '''Another stage that wants the name select.'''

        @zoo.hookimpl
        def zoo_register_stages():
            return [MySelect]
    """, "stage name 'select' of MySelect (plugin 'duplicate') is already taken by zoo.stages.columns.Select"),
    "needs_args": ("""
        import zoo
        from zoo.stages.columns import Select

        class NeedsArgs(Select):
            '''Cannot be built without arguments.'''
            zoo_name = 'needs_args'

            def __init__(self, required):
                super().__init__()

        @zoo.hookimpl
        def zoo_register_stages():
            return [NeedsArgs]
    """, "cannot be built without arguments: TypeError"),
    "bad_params": ("""
        import zoo
        from zoo.stages.columns import Select

        class BadParams(Select):
            '''Its params cannot be listed.'''
            zoo_name = 'bad_params'

            @property
            def params(self):
                raise ValueError('params are computed lazily and fail')

        @zoo.hookimpl
        def zoo_register_stages():
            return [BadParams]
    """, "cannot be described: ValueError: params are computed lazily and fail"),
}


@pytest.fixture
def broken_plugins(tmp_path) -> dict[str, str]:
    """A folder with one installed-looking distribution per broken plugin; the env that finds them."""
    site = tmp_path / "site"
    site.mkdir()
    for name, (source, _) in PLUGINS.items():
        (site / f"zoo_broken_{name}.py").write_text(textwrap.dedent(source))
        info = site / f"zoo_broken_{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zoo-broken-{name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[zoo]\n{name} = zoo_broken_{name}\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_every_kind_of_broken_plugin_is_listed_as_broken_and_the_rest_works(broken_plugins):
    result = zoo_cmd("stages", "--json", env_extra=broken_plugins)
    listing = {s["name"]: s for s in json.loads(result.stdout)}
    broken_names = {"import_error": "import_error", "hook_raises": "hook_raises", "wrong_type": "wrong_type",
                    "duplicate": "duplicate:select", "needs_args": "needs_args", "bad_params": "bad_params"}
    for plugin, (_, words) in PLUGINS.items():
        entry = listing[broken_names[plugin]]
        assert words in entry["broken"], (plugin, entry)
        assert entry["distribution"] == f"zoo-broken-{plugin}"
        assert f"zoo-broken-{plugin}" in result.stderr or plugin in result.stderr  # logged with its distribution
    working = {n for n, s in listing.items() if not s["broken"]}
    assert {"select", "sql", "vector_assembler", "text_normalize"} <= working
    assert listing["select"]["cls"] == "zoo.stages.columns.Select"  # the first registration keeps the name

    text = zoo_cmd("stages", env_extra=broken_plugins).stdout
    assert "needs_args         BROKEN" in text

    check = zoo_cmd("check", "needs_args", "--json", env_extra=broken_plugins, check=11)
    (result_row,) = json.loads(check.stdout)["stages"]["needs_args"]
    assert result_row["check"] == "construct" and "cannot be built without arguments" in result_row["message"]

    code = "import zoo; print(zoo.stage('select', cols=['a']).getCols()); zoo.stage('needs_args')"
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **broken_plugins})
    assert run.stdout.strip() == "['a']"
    assert "StageError: stage 'needs_args' cannot be used" in run.stderr


def test_plugin_settings_are_read_when_an_operation_starts(monkeypatch):
    assert "text_normalize" in {s.name for s in zoo.stages()}
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "text")
    assert "text_normalize" not in {s.name for s in zoo.stages()}
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "")
    monkeypatch.setenv("ZOO_PLUGINS_AUTOLOAD", "0")
    assert "text_normalize" not in {s.name for s in zoo.stages()} and "sql" in {s.name for s in zoo.stages()}
    monkeypatch.delenv("ZOO_PLUGINS_AUTOLOAD")
    assert "text_normalize" in {s.name for s in zoo.stages()}


def test_a_missing_kit_dependency_says_what_to_install(tmp_path, monkeypatch):
    import subprocess
    import sys

    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "hypothesis.py").write_text("raise ImportError('No module named hypothesis')\n")
    code = ("from zoo.testing import check_stage\n"
            "try:\n    check_stage('select', None)\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(blocker)})
    assert "StageError" in run.stdout and "pip install 'sparkzoo[testing]'" in run.stdout, run.stdout + run.stderr
    assert Path(blocker / "hypothesis.py").exists()
