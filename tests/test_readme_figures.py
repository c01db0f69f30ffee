"""The README's measured figures come from committed result files: its table is exactly
what ``bench/readme_figures.py`` renders from ``bench/results``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import readme_figures  # noqa: E402


def test_the_readme_table_is_what_the_result_files_render():
    readme = (ROOT / "README.md").read_text()
    table = readme_figures.current(readme)
    assert table, "README.md has lost its rendered block"
    assert table == readme_figures.render(), (
        "README.md's measured table differs from bench/results: run "
        "python bench/readme_figures.py --write")


def test_a_figure_without_its_result_file_is_left_out(tmp_path):
    shutil.copy(ROOT / "bench" / "results" / "scaling.json", tmp_path)
    rows = readme_figures.render(tmp_path).splitlines()[3:-1]
    assert rows and all("`bench/results/scaling.json`" in row for row in rows)
