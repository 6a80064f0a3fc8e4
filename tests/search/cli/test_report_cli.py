"""`hwnas report` end to end on a tiny database made by a real search (front re-measured on
LiteRT) and a real export: every section, figure and number checked against the database."""

from __future__ import annotations

import json
import re
import shlex
from importlib import metadata

import pytest
from cli_helpers import hwnas, run_json
from PIL import Image
from sqlalchemy import select

from hwnas.db.models import Candidate, Search
from hwnas.db.session import open_db
from hwnas.search.cli import main

SECTIONS = [
    "Setup", "Pareto front per target", "Predicted against measured latency",
    "Sampler comparison", "Weight-sharing check", "Cross-target specialisation", "Exports",
    "How to reproduce",
]  # fmt: skip


def candidates(url: str, search: str) -> list:
    with open_db(url, create=False) as db, db.read() as s:
        q = select(Candidate).join(Search).where(Search.name == search)
        return list(s.scalars(q.order_by(Candidate.accuracy.desc())))


@pytest.fixture(scope="module")
def reported(ready):
    cwd, url = ready
    run_json("search", "--run", "tiny", "--target", "tflite", "--trials", "8", "--name",
             "to-report", "--seed", "1", "--quiet", "--db", url, cwd=cwd)  # fmt: skip
    best = next(c for c in candidates(url, "to-report") if c.pareto)
    run_json("export", "--candidate", str(best.id), "--out", "rep.tflite", "--no-measure",
             "--db", url, cwd=cwd)  # fmt: skip
    out = run_json("report", "to-report", "--out", "rep", "--db", url, cwd=cwd)
    return cwd, url, out, best


def test_every_section_and_figure(reported):
    cwd, _, out, _ = reported
    text = (cwd / "rep" / "report.md").read_text()
    assert out["sections"] == SECTIONS
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert {"pareto_0.png", "latency_0.png", "hypervolume.png"} <= set(links)
    assert sorted(links) == sorted(out["figures"])
    for name in links:
        with Image.open(cwd / "rep" / name) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_numbers_come_from_the_database(reported):
    cwd, url, _, best = reported
    text = (cwd / "rep" / "report.md").read_text()
    rows = candidates(url, "to-report")
    front = [c for c in rows if c.pareto]
    assert f"{len(rows)} finished trials, {sum(c.feasible for c in rows)} feasible, " in text
    table = text.split("every objective at once):")[1].split("\n\n")[1].splitlines()
    assert len(table) == 2 + len(front)  # header, rule, one row per front candidate
    measured = [c for c in front if c.measured_ms]
    assert measured, "the search re-measured its front"
    for c in measured:
        assert f"| {c.id} | {c.accuracy:.4f} |" in text
        assert f"/ {c.measured_ms['tflite-fp32-t1']:.4g}" in text
    assert f"| {best.id} | fp32 |" in text  # the export, with its proof
    assert "one latency target" in text  # a single-target search says what to do instead


def test_commands_and_versions(reported):
    cwd, _, _, best = reported
    text = (cwd / "rep" / "report.md").read_text()
    rounds = text.split("hwnas search --run tiny --target tflite-fp32-t1 --trials 8 --rounds 3")
    assert len(rounds) == 2, "the search's command, with its first round's trials and rounds"
    line = rounds[1].splitlines()[0]
    assert line.endswith(
        " --seed 1 --margin auto --initial 10 --accuracy auto --sampler tpe --name to-report"
    )
    subnet = json.dumps(best.subnet, separators=(",", ":"))
    assert f"hwnas export --run tiny --subnet '{subnet}' --precision fp32 --out rep.tflite" in text
    assert "hwnas measure --run tiny --target tflite-fp32-t1 --n " in text
    assert f"- jax: {metadata.version('jax')}" in text
    assert f"- optuna: {metadata.version('optuna')}" in text


def test_the_commands_to_reproduce_run_as_printed(reported, tmp_path):
    """In a new folder, from nothing: train, measure, fit, search, export, report."""
    cwd, _, _, _ = reported
    text = (cwd / "rep" / "report.md").read_text()
    block = text.split("## How to reproduce")[1].split("```bash\n")[1].split("```")[0]
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [
        ["hwnas", "train"], ["hwnas", "measure"], ["hwnas", "predictor"], ["hwnas", "search"],
        ["hwnas", "export"], ["hwnas", "report"],
    ]  # fmt: skip
    for command in commands:
        hwnas(*command[1:], cwd=tmp_path)
    assert (tmp_path / "rep.tflite").read_bytes()[4:8] == b"TFL3"
    again = (tmp_path / "report" / "report.md").read_text()
    assert "hwnas search --run tiny --target tflite-fp32-t1 --trials 8 --rounds 3" in again


def test_report_again_into_its_own_folder(reported):
    cwd, url, _, _ = reported
    before = (cwd / "rep" / "report.md").stat().st_mtime_ns
    hwnas("report", "to-report", "--out", "rep", "--db", url, cwd=cwd)
    assert (cwd / "rep" / "report.md").stat().st_mtime_ns > before


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "--out", "new"], "no search named 'nope'"),
        (["to-report", "--out", "afile"], "is a file"),
        (["to-report", "--out", "busy"], "holds other files"),
        (["to-report", "--out", "new", "--bench", "missing"], "is not a folder"),
        (["to-report", "--out", "nodir/new"], "does not exist"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(reported, args, message, capsys, monkeypatch):
    cwd, url, _, _ = reported
    monkeypatch.chdir(cwd)
    (cwd / "afile").write_text("keep")
    (cwd / "busy").mkdir(exist_ok=True)
    (cwd / "busy" / "notes.txt").write_text("keep")
    assert main(["report", *args, "--db", url]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (cwd / "new").exists()
    assert (cwd / "afile").read_text() == "keep"
    assert sorted(p.name for p in (cwd / "busy").iterdir()) == ["notes.txt"]
