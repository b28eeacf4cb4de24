"""The documentation: included results equal their files, every relative link resolves, and the
README's test command is what CI runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

TEST_COMMAND = "pip install uv && uv run --locked pytest -q"
DEMO_COMMAND = "pip install uv && uv run --locked pdesurrogate demo"


def test_include_blocks_equal_their_files_and_links_resolve():
    assert build.pages()[1:], "docs/ has no pages"
    assert build.problems() == []


def test_the_checks_catch_a_stale_block_and_a_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text("<!-- include: table.md -->\nold\n<!-- end include -->\n[ok](../table.md) ![gone](fig.png)\n"
                    "[web](https://example.org) [anchor](#top)\n```\n[in code](nowhere.md)\n```\n")
    (tmp_path / "README.md").write_text("[docs](docs/page.md#section)\n")
    assert build.problems(tmp_path) == ["docs/page.md: include block of table.md differs from the file (run docs/build.py)",
                                        "docs/page.md: link target fig.png does not exist"]
    page.write_text(build.filled(page.read_text(), tmp_path).replace("![gone](fig.png)", ""))
    assert build.problems(tmp_path) == []
    assert "| 1 |" in page.read_text()


def test_ci_runs_exactly_the_readme_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in readme and DEMO_COMMAND in readme
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [TEST_COMMAND]


def test_readme_stays_a_front_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 160


def test_validation_table_is_rendered_from_its_json():
    """experiments/results/validation_cpu.md is exactly what experiments/validation.py renders from the
    figures in validation_cpu.json (which the tests recorded), with '|' in cells escaped."""
    import json

    spec = importlib.util.spec_from_file_location("validation_script", ROOT / "experiments" / "validation.py")
    validation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(validation)
    data = json.loads((ROOT / "experiments" / "results" / "validation_cpu.json").read_text())
    table = validation.markdown(data["rows"], data["meta"])
    assert (ROOT / "experiments" / "results" / "validation_cpu.md").read_text() == table
    assert data["meta"]["selection"] == "default and slow suites" and len(data["rows"]) > 40
    row = dict(data["rows"][0], check="a |b| c")
    assert "a \\|b\\| c" in validation.markdown([row], data["meta"]).splitlines()[-1]
