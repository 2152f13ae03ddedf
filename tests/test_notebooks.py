"""Static checks of the chapter notebooks, run without executing them.

Every ``{glue:text}`key``` (or ``{glue}``, ``{glue:}``) in a chapter's prose must name a
value that a code cell of the same chapter glues with ``glue("key", ...)``: a sentence
that quotes a number the code never computes would fail only in the strict book build,
minutes later and far from the cause.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

CHAPTERS = sorted((Path(__file__).parents[1] / "chapters").glob("*.ipynb"))
ROLE = re.compile(r"\{glue(?::text|:md|:any|:)?\}`([^`:]+)(?::[^`]*)?`")
DIRECTIVE = re.compile(r"```\{glue(?::figure|:math|:any|:)?\}\s+(\S+)")
GLUED = re.compile(r"""\bglue\(\s*(?:f?["'])([^"']+)["']""")


def _cells(path: Path, kind: str) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == kind]


def quoted_keys(path: Path) -> set[str]:
    """The glue keys a notebook's markdown quotes."""
    text = "\n".join(_cells(path, "markdown"))
    return set(ROLE.findall(text)) | set(DIRECTIVE.findall(text))


def glued_keys(path: Path) -> set[str]:
    """The glue keys a notebook's code cells define (literal names only)."""
    return set(GLUED.findall("\n".join(_cells(path, "code"))))


def test_the_patterns_find_what_they_should():
    md = "within {glue:text}`big_error:.1%` and {glue:}`n_runs`; ```{glue:figure} fig_a\n```"
    assert set(ROLE.findall(md)) | set(DIRECTIVE.findall(md)) == {"big_error", "n_runs", "fig_a"}
    code = "glue(\"big_error\", err, display=False)\nglue( 'n_runs', 7)"
    assert set(GLUED.findall(code)) == {"big_error", "n_runs"}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_quoted_glue_key_is_glued_in_the_same_chapter(path):
    missing = quoted_keys(path) - glued_keys(path)
    assert not missing, f"{path.name} quotes glue keys its code never glues: {sorted(missing)}"


POINTING = re.compile(r"\b(printed|shown) (above|below|at the top|under the table)\b", re.I)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_prose_states_results_instead_of_pointing_at_output(path):
    hits = [m.group(0) for text in _cells(path, "markdown") for m in POINTING.finditer(text)]
    assert not hits, f"{path.name} points at output instead of glueing the value: {hits}"
