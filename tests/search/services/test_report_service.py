"""`report` called as a library: a typed result, and bad folders that name their field."""

from __future__ import annotations

import pytest
from cli_helpers import run_json, search_args

from hwnas.exceptions import HwnasError, shown
from hwnas.search.services.report import ReportResult, check_out, load_bench, report


def test_a_search_reports_to_a_typed_result(ready, tmp_path):
    cwd, url = ready
    run_json(*search_args(url, "lib-report", 4), cwd=cwd)
    result = report(url, "lib-report", tmp_path / "rep")
    assert isinstance(result, ReportResult)
    assert result.sections[0] == "Setup" and result.sections[-1] == "How to reproduce"
    assert "pareto_0.png" in result.figures
    assert all((tmp_path / "rep" / f).is_file() for f in result.figures)
    out = result.to_json()
    assert list(out) == ["report", "figures", "sections"]
    assert out["figures"] == list(result.figures) and out["report"].endswith("report.md")


def test_an_unknown_search_is_a_user_error(ready, tmp_path):
    _, url = ready
    with pytest.raises(HwnasError, match="no search named 'nope'"):
        report(url, "nope", tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


def test_bad_folders_name_their_field(tmp_path):
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(HwnasError) as e:
        check_out(tmp_path / "afile")
    assert e.value.field == "out"
    assert shown(e.value, flags=True).startswith(f"--out {tmp_path / 'afile'} is a file")
    with pytest.raises(HwnasError) as e:
        load_bench(tmp_path / "missing")
    assert e.value.field == "bench" and shown(e.value, flags=False).startswith("bench ")
