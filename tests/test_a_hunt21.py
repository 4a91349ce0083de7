"""Hunt 21 A: cross-references after the README split (README.md front page + docs/*.md).

The reference moved verbatim from one long README into docs/, so a "see *Training and evaluation*"
or "step 2 above" could point into another page; these tests keep the links between pages true.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]*)#([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_every_section_anchor_of_a_link_is_a_heading_of_its_page():
    bad = []
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text(encoding="utf-8")):
            dest = (page.parent / target).resolve() if target else page
            if dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert not bad, bad


def test_a_page_named_in_another_page_is_linked_there():
    """'see *Accuracy off the home ground*' in scoring.md was a section of the same README; now it is
    another page, and the name alone leads nowhere: each mention of another page's title must link it."""
    titles = {}
    for page in PAGES[1:]:
        first = page.read_text(encoding="utf-8").splitlines()[0]
        titles[page.name] = re.split(r" \(|: ", first.lstrip("# "))[0]  # "Scoring slides: the sTIL%..."
    bad = []
    for page in PAGES[1:]:
        text = page.read_text(encoding="utf-8")
        for name, title in titles.items():
            if name == page.name:
                continue
            for m in re.finditer(r"\*" + r"\s+".join(map(re.escape, title.split())) + r"\*", text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{page.name}:{line}: *{title}* (link {name})")
    assert not bad, bad
