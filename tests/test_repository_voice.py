"""The repository describes what the product is and does, not the story of how it was made.

The history of the work (which run was stopped and resumed when, what was tried in which working
session, which tools were called) belongs in git commit messages. This test reads the product's
text files and fails, listing ``file:line``, where one narrates its own making or cites a file
that is not in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What is read: the product's packages, benchmarks, docs and tests, and the top-level files.
FOLDERS = ("slac_runtime", "robots", "calibration", "slac_train", "benchmarks", "docs", "tests")
TOP_LEVEL = ("README.md", "pyproject.toml", "Makefile")
SUFFIXES = {".py", ".md", ".toml", ".json", ".txt", ".sh"}
SKIP = {Path(__file__).resolve()}  # this file names the patterns it looks for

# Each pattern is specific enough to leave the ordinary uses of these words alone: an
# onnxruntime InferenceSession, a TensorBoard session, "resumed" as a feature of slac-train.
PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(regex, re.IGNORECASE)
    for name, regex in {
        "a numbered working session": r"\bsessions? \d+",
        "a working session's start or end": r"\bsessions? (ended|ends|started|starts)\b",
        "this, the previous or the next session": (
            r"\b(this|previous|next|last|earlier|later) sessions?\b"
        ),
        "a sitting": r"\bsittings?\b",
        "a run's history": r"\b(was|were) stopped and resumed\b|\bstopped and resumed in\b",
        "a design file outside the repository": r"\bDESIGN(\.md)?\s*§|\bDESIGN\.md\b",
        "a path outside the repository": r"\.\./shared\b|/work/shared\b|\bspecs/\w+\.md\b",
        "a tool call": r"\brun\(command=|\bcarry=\[|\bgive_back\b",
        "a device lease": r"\b(GPU|device) (lease|call)s?\b|\bdevice time\b",
    }.items()
}


def product_files() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL if (ROOT / name).is_file()]
    for folder in FOLDERS:
        files += [
            p for p in sorted((ROOT / folder).rglob("*")) if p.is_file() and p.suffix in SUFFIXES
        ]
    return [p for p in files if p.resolve() not in SKIP and "__pycache__" not in p.parts]


def narration(path: Path) -> list[str]:
    """``file:line: what -- the line`` for every line of ``path`` that narrates its own making."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {what} -- {line.strip()[:120]}")
    return found


def test_patterns_flag_narration_and_spare_ordinary_words():
    flagged = [
        "stopped at 28k in session 5, resumed in session 6",
        "when session 5 ended",
        "measured at the very end of this session",
        "tried in this sitting",
        "the run was stopped and resumed twice",
        "The robot interface (DESIGN.md §5)",
        "facts from ../shared/specs/dclaw.md",
        "the paper's defaults (specs/slac.md)",
        'run(command="bash run.sh", carry=[".gpu"])',
        "within a short GPU lease",
    ]
    spared = [
        "session = ort.InferenceSession(path)",
        "open a TensorBoard session on the run directory",
        "`--resume RUN_DIR` continues a run exactly",
        "a run that already exists is resumed",
        "sessions of the onnxruntime",
    ]
    for line in flagged:
        assert any(p.search(line) for p in PATTERNS.values()), line
    for line in spared:
        assert not any(p.search(line) for p in PATTERNS.values()), line


def test_no_file_narrates_its_own_making():
    found = [hit for path in product_files() for hit in narration(path)]
    assert not found, (
        "narration of the product's own making (the history belongs in git):\n" + "\n".join(found)
    )
