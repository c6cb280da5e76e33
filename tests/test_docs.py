"""The repository explains itself: code and Markdown cite no document outside it, and every pointer
into docs/ (file and, where given, section anchor) resolves."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()
NOT_SOURCES = {"build", "dist", "runs", "demo", "bench_results", "__pycache__"}

# Notes that exist only outside the repository, in the ways code and Markdown used to cite them.
OUTSIDE_DOCUMENT = re.compile(
    r"\bGUIDE\b"                          # "GUIDE 3.1"
    r"|\bAPIS(\.md)?\b"
    r"|\bMODELS(\.md)?\b(?!\s*[=\[(])"    # the note, not a constant or call named MODELS
    r"|\b[Ii]ssues?\s+#?\d+"              # "issue 4"
    r"|shared/data/README")
DOCS_POINTER = re.compile(r"\bdocs/([\w./-]+?\.md)(?:#([\w-]+))?")
MARKDOWN_LINK = re.compile(r"\]\(([^()\s]*)\)")


def repo_files(*suffixes: str) -> list[Path]:
    """Files of the working tree that git tracks or would track (not ignored), else a filtered walk."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
        paths = [ROOT / p for p in listed]
    except (OSError, subprocess.SubprocessError):  # not a git checkout (e.g. an unpacked sdist)
        paths = [p for p in ROOT.rglob("*") if not any(
            part.startswith(".") or part in NOT_SOURCES or part.endswith(".egg-info")
            for part in p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.suffix in suffixes and p.is_file() and p.resolve() != THIS)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    found, in_code = set(), False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


def numbered_lines(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        yield f"{path.relative_to(ROOT)}:{number}", line


@pytest.mark.parametrize("text, cites", [
    ("(GUIDE 3.1 layout)", True), ("see APIS.md", True), ("only MODELS can say", True),
    ("Target (issue 2)", True), ("issues 3", True), ("../shared/data/README.md", True),
    ("docs/formats.md#dat-spike-files", False), ("MODELS = {}", False), ("a tissue 4 cm wide", False),
    ("test_packed_layout_matches_guide", False),
])
def test_the_citation_pattern_tells_citations_from_ordinary_text(text, cites):
    assert bool(OUTSIDE_DOCUMENT.search(text)) == cites


def test_no_code_or_markdown_cites_a_document_outside_the_repository():
    hits = [f"{where}: {line.strip()}" for path in repo_files(".py", ".md")
            for where, line in numbered_lines(path) if OUTSIDE_DOCUMENT.search(line)]
    assert not hits, ("cite docs/*.md or state the fact instead of an outside document:\n"
                      + "\n".join(hits))


def test_every_docs_pointer_names_an_existing_file_and_section():
    missing = []
    for path in repo_files(".py", ".md"):
        for where, line in numbered_lines(path):
            for name, anchor in DOCS_POINTER.findall(line):
                target = ROOT / "docs" / name
                if not target.is_file():
                    missing.append(f"{where}: docs/{name} does not exist")
                elif anchor and anchor not in anchors(target):
                    missing.append(f"{where}: docs/{name} has no section #{anchor}")
    assert not missing, "\n".join(missing)


def test_relative_markdown_links_resolve():
    broken = []
    for path in repo_files(".md"):
        for where, line in numbered_lines(path):
            for link in MARKDOWN_LINK.findall(line):
                if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = link.partition("#")
                target = (path.parent / file_part).resolve() if file_part else path
                if not target.exists():
                    broken.append(f"{where}: {link} (no such file)")
                elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                    broken.append(f"{where}: {link} (no such section)")
    assert not broken, "\n".join(broken)


def test_the_docs_exist():
    for name in ("architecture.md", "formats.md", "models.md", "reliability.md"):
        assert anchors(ROOT / "docs" / name), f"docs/{name} has no headings"
