"""Fill the documentation's include blocks from the files the scripts wrote, and check its links.

    uv run python docs/build.py           # rewrite every include block from its file
    uv run python docs/build.py --check   # exit 1 if a block differs from its file or a link is broken

Pages: ``README.md`` and ``docs/*.md``. An include block is

    <!-- include: experiments/results/validation_cpu.md -->
    (the file's text, verbatim)
    <!-- end include -->

each marker on a line of its own (an indented example, like this one, is left alone), with the path relative to the repository root, so a results table is generated once, by its
script, and the docs show that file rather than a retyped copy. Links and images with a relative
target must name a file or folder that exists (``tests/test_docs.py`` runs both checks).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"^<!-- include: (?P<path>\S+) -->\n(?P<body>.*?)^<!-- end include -->", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)[^)]*\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def pages(root: Path = ROOT) -> list[Path]:
    """The documentation pages: the README and every Markdown file in ``docs/``."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def filled(text: str, root: Path = ROOT) -> str:
    """``text`` with every include block's body replaced by its file's current text (when the file exists)."""
    def body(m: re.Match) -> str:
        source = root / m["path"]
        if not source.is_file():  # left as it is; problems() reports it
            return m[0]
        included = source.read_text(encoding="utf-8")
        return f"<!-- include: {m['path']} -->\n{included.rstrip()}\n<!-- end include -->"

    return INCLUDE.sub(body, text)


def includes(page: Path) -> list[tuple[str, str]]:
    """``(path, body)`` of each include block of ``page``."""
    return [(m["path"], m["body"]) for m in INCLUDE.finditer(page.read_text(encoding="utf-8"))]


def relative_links(page: Path) -> list[str]:
    """Relative link and image targets of ``page`` outside code blocks, without their ``#anchor``."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = (m["target"].split("#", 1)[0] for m in LINK.finditer(text))
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def problems(root: Path = ROOT) -> list[str]:
    """Stale include blocks, missing included files and broken relative links, one line each."""
    out = []
    for page in pages(root):
        name = page.relative_to(root)
        for path, body in includes(page):
            source = root / path
            if not source.is_file():
                out.append(f"{name}: included file {path} does not exist")
            elif body.rstrip() != source.read_text(encoding="utf-8").rstrip():
                out.append(f"{name}: include block of {path} differs from the file (run docs/build.py)")
        for target in relative_links(page):
            if not (page.parent / target).exists():
                out.append(f"{name}: link target {target} does not exist")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only report stale blocks and broken links")
    args = ap.parse_args(argv)
    if not args.check:
        for page in pages():
            text = page.read_text(encoding="utf-8")
            new = filled(text)
            if new != text:
                page.write_text(new, encoding="utf-8")
                print(f"updated {page.relative_to(ROOT)}")
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
