"""What a new user types with their own files: each command as typed, and the one line it
answers (before any work starts) or the run it makes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- the docs' snippets -----------------------------------------------------------------------
def test_doc_snippets_import_the_run_config_they_use():
    """A snippet copied from the docs runs as it stands: one that builds a RunConfig imports
    it (docs/mf.md and docs/scheduler.md did not)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
        for block in blocks:
            if "RunConfig(" in block and not re.search(r"^from \S+ import .*\bRunConfig\b",
                                                       block, re.M):
                missing.append(f"{page.name}: {block.splitlines()[0]}")
    assert not missing, missing
