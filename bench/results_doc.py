"""Write docs/results.md from docs/results.json: `python -m bench.results_doc [--check]`.

Every figure of docs/results.md is a record in docs/results.json: `what` was measured, the
`figure`, the `command` that reproduces it (or, where one command does not, `reproduce` in
words), its `date` and `commit` where known, and `notes`. Edit the JSON, never the Markdown,
then run this; `--check` exits 1 when docs/results.md is not what the JSON gives
(tests/test_docs.py checks the same). The Markdown has one block per figure with its lines
wrapped, where the old hand-edited tables had rows of up to 2,457 characters.

A record can come from the JSON that `python -m bench NAME --out DIR` writes, which carries
the exact command, the time it finished and the commit:

    python -m bench.results_doc add DIR/NAME.json --section figures --what "..." --figure "..."
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "results.json"
DOC = ROOT / "docs" / "results.md"
COMMAND = "python -m bench.results_doc"
WIDTH = 99
# A word that would start a list, heading, quote, rule, fence, table or HTML block at the start
# of a line: the wrapper never puts one there.
BLOCK_START = re.compile(r"^([-+*]|#{1,6}|>.*|\d{1,9}[.)]|[-=*_]{2,}|`{3}.*|~{3}.*|<.*|\|.*)$")


def load(path: Path = DATA) -> dict:
    return json.loads(path.read_text())


def wrap(text: str, width: int = WIDTH) -> list[str]:
    """Greedy wrap at spaces; a word that Markdown would read as a block start stays on the
    line before (which may then run over `width`)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width or BLOCK_START.match(word):
            line += " " + word
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def command_lines(command: str, width: int = WIDTH) -> list[str]:
    """A shell command wrapped before its options (`-x`, `--x`, `&&`), with `\\` continuations."""
    units: list[str] = []
    for token in command.split(" "):
        if units and not token.startswith("-") and token != "&&":
            units[-1] += " " + token
        else:
            units.append(token)
    lines = [units[0]]
    for unit in units[1:]:
        indent = 0 if len(lines) == 1 else 4
        if indent + len(lines[-1]) + 1 + len(unit) + 2 <= width:
            lines[-1] += " " + unit
        else:
            lines.append(unit)
    body = [lines[0], *("    " + s for s in lines[1:])]
    return [*(s + " \\" for s in body[:-1]), body[-1]]


def _dated(figure: dict) -> str:
    """`what`, with the date and commit added where its words do not give them already."""
    said = figure["what"] + " " + figure["figure"]
    extra = [
        (f"commit {v}" if key == "commit" else v)
        for key in ("date", "commit")
        if (v := figure.get(key)) and v not in said
    ]
    return figure["what"] + (f" ({', '.join(extra)})" if extra else "")


def figure_lines(figure: dict) -> list[str]:
    out = [*wrap(f"**What.** {_dated(figure)}"), "", *wrap(f"**Figure.** {figure['figure']}")]
    if figure.get("command"):
        out += ["", "**Reproduce:**", "", "```", *command_lines(figure["command"]), "```"]
        if figure.get("notes"):
            out += ["", *wrap(f"({figure['notes']})")]
    elif figure.get("reproduce"):
        out += ["", *wrap(f"**Reproduce:** {figure['reproduce']}")]
    return out


def _paragraphs(texts: list[str]) -> list[str]:
    out: list[str] = []
    for text in texts:
        out += [*wrap(text), ""]
    return out


def render(doc: dict) -> str:
    out = [f"# {doc['title']}", ""]
    out += [
        "<!-- Generated from docs/results.json by `python -m bench.results_doc`: edit the JSON,",
        "     then run it. -->",
        "",
        "[Back to the README](../README.md)",
        "",
    ]
    out += wrap(
        f"This file is generated: every figure is a record of [results.json](results.json), "
        f"and `{COMMAND}` writes this file from it (`--check` tells whether it is current)."
    )
    out += ["", *_paragraphs(doc["intro"])]
    for section in doc["sections"]:
        out += [f"## {section['title']}", "", *_paragraphs(section["intro"])]
        for i, figure in enumerate(section["figures"]):
            out += (["---", ""] if i else []) + figure_lines(figure) + [""]
        if section["outro"]:
            out += ["---", "", *_paragraphs(section["outro"])]
    while out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def record_from_bench(result: dict, what: str, figure: str, notes: str | None) -> dict:
    """A figure record from the JSON that `python -m bench` writes for one bench."""
    record = {
        "what": what,
        "figure": figure,
        "date": str(result["finished_at"])[:10],
        "commit": result.get("commit"),
        "command": result["command"],
    }
    return record | ({"notes": notes} if notes else {})


def add(args: argparse.Namespace) -> int:
    doc = load(args.data)
    sections = {s["key"]: s for s in doc["sections"]}
    if args.section not in sections:
        known = ", ".join(sections)
        print(f"results_doc: no section {args.section!r}; one of {known}", file=sys.stderr)
        return 2
    result = json.loads(Path(args.bench_json).read_text())
    record = record_from_bench(result, args.what, args.figure, args.notes)
    sections[args.section]["figures"].insert(0, record)
    args.data.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return write(doc, args.doc)


def write(doc: dict, path: Path) -> int:
    path.write_text(render(doc))
    print(f"results_doc: wrote {path}", file=sys.stderr)
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="the figures (JSON)")
    p.add_argument("--doc", type=Path, default=DOC, help="the Markdown to write")
    p.add_argument("--check", action="store_true", help="exit 1 if the Markdown is stale")
    sub = p.add_subparsers(dest="verb")
    a = sub.add_parser("add", help="add a record from a bench's JSON, first in its section")
    a.add_argument("bench_json", help="DIR/NAME.json as `python -m bench` writes it")
    a.add_argument("--section", required=True, help="section key, e.g. headline or figures")
    a.add_argument("--what", required=True, help="what was measured")
    a.add_argument("--figure", required=True, help="the figure, in words")
    a.add_argument("--notes", default=None, help="how to read or rerun it")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.verb == "add":
        return add(args)
    doc = load(args.data)
    if args.check:
        if args.doc.read_text() != render(doc):
            print(f"results_doc: {args.doc} is stale; run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    return write(doc, args.doc)


if __name__ == "__main__":
    sys.exit(main())
