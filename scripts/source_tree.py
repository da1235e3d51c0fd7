#!/usr/bin/env python3
"""Prints the source tree, one line per file with its role (the file's first `//!` doc line).

    scripts/source_tree.py            # print it
    scripts/source_tree.py --check    # exit 1 if docs/maintaining.md's tree is not this one
    scripts/source_tree.py --write    # rewrite docs/maintaining.md's tree
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "maintaining.md"
BEGIN = "<!-- tree: generated from each file's first `//!` line by `scripts/source_tree.py` -->"
END = "<!-- end of tree -->"


def role(path: pathlib.Path) -> str:
    """The first sentence of the file's module doc (`//!` lines up to the first blank one)."""
    paragraph = []
    for line in path.read_text().splitlines():
        if not line.startswith("//!"):
            if paragraph:
                break
            continue
        text = line[3:].strip()
        if not text:
            break
        paragraph.append(text)
    if not paragraph:
        return "(no module doc)"
    text = " ".join(paragraph)
    # A sentence ends at ". " before a capital, not after an abbreviation.
    for m in re.finditer(r"\. (?=[A-Z`])", text):
        if not text[: m.start()].endswith((" al", "e.g", "i.e", "vs")):
            return text[: m.start() + 1]
    return text


def short(text: str, width: int = 110) -> str:
    """At most `width` characters, cut at a word."""
    if len(text) <= width:
        return text
    return text[:width].rsplit(" ", 1)[0].rstrip(",;:(") + " ..."


def tree() -> str:
    files = sorted(ROOT.glob("src/**/*.rs")) + sorted(ROOT.glob("benches/*.rs"))
    width = max(len(str(f.relative_to(ROOT))) for f in files)
    lines = [f"{str(f.relative_to(ROOT)):<{width}}  {short(role(f))}" for f in files]
    return "```\n" + "\n".join(lines) + "\n```"


def with_tree(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{tree()}\n{END}{tail if tail else chr(10)}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(with_tree(DOC.read_text()))
    elif "--check" in sys.argv:
        if with_tree(DOC.read_text()) != DOC.read_text():
            sys.exit("docs/maintaining.md: the source tree is out of date; run scripts/source_tree.py --write")
    else:
        print(tree())
