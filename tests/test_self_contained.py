"""Code comments and docs cite what a reader of this repository can open (docs/contracts.md,
README.md), never the planning documents it was built from, which are not shipped with it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("helpers", "skills", "skills-ko", "docs", "examples", "benchmarks", "hooks", "tests")
# DESIGN.md, the research notes and the seed documents live outside the repository.
OUTSIDE = re.compile(r"\bDESIGN(?:\.md)?\b|\bresearch [A-Z]\b|\bresearch/|\bseed 00\d\b|\bseeds/|\.\./shared\b")


def shipped_text_files():
    for top in SHIPPED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in {".py", ".md", ".yaml", ".json", ".sh"} and "__pycache__" not in path.parts:
                yield path
    yield ROOT / "README.md"


def test_no_reference_to_documents_outside_the_repository():
    found = []
    for path in shipped_text_files():
        if path == Path(__file__).resolve():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == []


def test_the_pattern_catches_what_it_is_for():
    for line in ("(DESIGN §5)", "research C §2e", "the contract of seed 000", "see ../shared/DESIGN.md"):
        assert OUTSIDE.search(line), line
    for line in ("autoresearch-style block", "seeded draw", "seed 42", "<field>/shared/"):
        assert not OUTSIDE.search(line), line
