"""The one table of the benchmarks: collecting the results files' summary rows, rendering
them, the ``python -m benchmarks all`` dispatcher on bad input and failing benchmarks,
and the summary rows of the benchmarks that build them from their figures.

Fast: no benchmark runs here; ``all`` runs tiny stand-in commands.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as cli  # noqa: E402
from benchmarks import summary  # noqa: E402


def _good(name: str = "demo", **change: object) -> dict:
    base = summary.row(name, "case A", anchor="CDO", ratio=2.5, ratio_meaning="CDO s / ours s",
                       peak_mib=512.0, target="2x faster than CDO", met=True, note="")
    return {**base, **change}


def _write(folder: Path, name: str, data: object) -> Path:
    path = folder / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_collect_reads_valid_rows_and_flags_every_broken_file(tmp_path: Path) -> None:
    _write(tmp_path, "good", {"other": 1, "summary": [_good("good"),
                                                      _good("good", met=None, ratio=None)]})
    _write(tmp_path, "old", {"results": {}})  # written before the contract
    _write(tmp_path, "empty", {"summary": []})
    _write(tmp_path, "broken", "{not json")
    _write(tmp_path, "lacking", {"summary": [_good(), {"benchmark": "x"}]})
    _write(tmp_path, "typed", {"summary": [_good(met="yes")]})
    _write(tmp_path, "nan", {"summary": [_good(ratio=float("nan"))]})
    _write(tmp_path, "extra", {"summary": [{**_good(), "speed": 3}]})
    _write(tmp_path, "notlist", {"summary": {"a": 1}})
    (tmp_path / ".good.json.abc123.tmp").write_text("{")  # an atomic write under way
    rows = summary.collect(tmp_path, expected=["missing", "good"])

    assert list(rows)[:2] == ["missing", "good"]  # expected first, in that order
    assert "no results file yet" in rows["missing"][0]["note"]
    assert [r["met"] for r in rows["good"]] == [True, None]
    notes = {name: r[0]["note"] for name, r in rows.items() if len(r) == 1}
    assert "no summary rows yet" in notes["old"]
    assert "no summary rows yet" in notes["empty"]
    assert "unreadable" in notes["broken"]
    assert "row 2" in notes["lacking"] and "lacks" in notes["lacking"]
    assert "met is a str" in notes["typed"]
    assert "not finite" in notes["nan"]
    assert "unknown keys speed" in notes["extra"]
    assert "not a list" in notes["notlist"]
    for name in ("old", "broken", "lacking", "typed", "nan", "extra", "notlist"):
        assert rows[name][0]["met"] is None and rows[name][0]["benchmark"] == name
    assert set(rows) == {"missing", "good", "old", "empty", "broken", "lacking", "typed",
                         "nan", "extra", "notlist"}


def test_problem_accepts_integers_but_not_booleans_as_numbers() -> None:
    assert summary.problem(_good(ratio=3, peak_mib=None)) is None
    assert summary.problem(_good(ratio=True)) == "ratio is a boolean"
    assert summary.problem(_good(met=1)) == "met is a int"
    assert summary.problem(["not", "a", "row"]) == "a row is a list, not an object"


def test_render_heads_the_table_and_marks_each_row() -> None:
    rows = {"climatology": [_good("climatology"),
                            _good("climatology", case="b|c", met=False, ratio=0.8,
                                  note="missed: 0.8x\nsee log")],
            "mhw": [_good("mhw", met=None, ratio=None, peak_mib=None)],
            "ingest": [_good("ingest")],
            "scaling": [summary.row("scaling", note="no results file yet (scaling.json)")]}
    statuses = {"climatology": summary.Status("ran", "", 12.4),
                "mhw": summary.Status("failed", "exit code 1: boom"),
                "scaling": summary.Status("skipped", "needs root")}
    dates = {"ingest": datetime(2026, 12, 1, 8, 30, tzinfo=UTC), "scaling": None}
    text = summary.render(rows, statuses=statuses, dates=dates,
                          machine_info={"cores": 2, "ram_gib": 23.5, "python": "3.11.7",
                                        "platform": "Linux x86_64"},
                          load_start=(1.0, 2.0, 3.0), load_end=(4.5, 2.0, 3.0),
                          now=datetime(2026, 12, 5, 1, 0, tzinfo=UTC))
    lines = text.splitlines()
    assert "2026-12-05 01:00 UTC" in lines[2] and "2 cores, 23.5 GiB RAM, Python 3.11.7" \
        in lines[2]
    assert "at the start 1.00 / 2.00 / 3.00, at the end 4.50 / 2.00 / 3.00" in lines[2]
    assert "Run in this invocation: climatology (12 s)." in text
    assert "Failed in this invocation" in text and "mhw" in text
    assert "Skipped: scaling (needs root)." in text
    assert "ingest (2026-12-01 08:30 UTC)" in text
    table = [ln for ln in lines if ln.startswith("| ")]
    assert table[0].startswith("| benchmark | case | anchor | ratio | peak MiB")
    body = table[1:]
    assert body[0] == ("| climatology | case A | CDO | 2.50 (CDO s / ours s) | 512 | "
                       "2x faster than CDO | ✓ |  |")
    assert "b\\|c" in body[1] and "| ✗ |" in body[1] and "missed: 0.8x see log" in body[1]
    assert body[2] == "| mhw | | | | | | – | failed in this run: exit code 1: boom |"
    assert summary._ratio(0.0238) == "0.0238" and summary._ratio(259.1) == "259"
    assert summary._ratio(9.254) == "9.25" and summary._ratio(0.00004) == "4.0e-05"
    assert body[3].startswith("| mhw | case A | CDO | – | – |") and "| – |" in body[3]
    assert "skipped: needs root" in body[5]
    assert len(body) == 7  # 5 rows + a failure row + a skip row
    assert all(len(re.split(r"(?<!\\)\|", ln)) == 10 for ln in body)  # 8 cells each


@pytest.mark.parametrize("argv", [[], ["nope"], ["all", "--only", "zz"], ["all", "--bogus"],
                                  ["all", "--timeout", "0"], ["summary", "extra"],
                                  ["all", "--only", ","]])
def test_bad_input_exits_2_with_a_message(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


def _bench(name: str, code: str, **kw: object) -> cli.Benchmark:
    return cli.Benchmark(name, ("-c", code), ("--quick-flag",), **kw)


def test_all_runs_each_benchmark_alone_and_reports_failures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    results.mkdir()
    stale = _write(results, "stale", {"summary": [_good("stale")]})
    os.utime(stale, (stale.stat().st_atime, stale.stat().st_mtime - 3600))  # an hour old
    ok_code = ("import json, sys, pathlib; p = pathlib.Path(sys.argv[1]); "
               f"p.write_text(json.dumps({{'summary': [{_good('ok')!r}]}})) "
               "if sys.argv[2:] == ['--quick-flag'] else sys.exit('not quick')")
    benches = [
        cli.Benchmark("ok", ("-c", ok_code, str(results / "ok.json")),
                      ("--quick-flag",)),
        _bench("bad", "import sys; print('partial'); sys.exit('bad input: no such file')"),
        _bench("crash", "raise ValueError('deep inside')"),
        _bench("slurmy", "import sys; sys.exit('must not run')", root=True),
        _bench("stale", "pass"),  # exits 0 but does not rewrite its results file
    ]
    code = cli.run_all(["--quick"], benches, results_dir=results, logs=tmp_path / "logs",
                       is_root=False)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "failed: bad, crash" in err
    text = (results / "summary.md").read_text()
    assert "| ok | case A | CDO | 2.50" in text
    assert "| bad | | | | | | – | failed in this run: exit code 1: bad input: no such file" \
        in text
    assert "ValueError: deep inside" in text  # the last line of its stderr
    assert "| slurmy | | | | | | – | skipped: needs root" in text
    assert "stale: ran, but did not rewrite stale.json." in text
    assert "no results file yet (bad.json)" in text
    assert (tmp_path / "logs" / "bad.log").read_text() == "partial\n"
    assert not list(results.glob(".*.tmp"))


def test_only_runs_a_subset_and_keeps_the_other_rows(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    _write(results, "first", {"summary": [_good("first")]})
    benches = [_bench("first", "import sys; sys.exit('must not run')"),
               _bench("second", "pass")]
    code = cli.run_all(["--only", "second"], benches, results_dir=results,
                       logs=tmp_path / "logs", is_root=True)
    assert code == 0
    text = (results / "summary.md").read_text()
    assert "Run in this invocation: second" in text
    assert "Taken from an earlier run (date of the results file): first (" in text
    assert "| first | case A |" in text
    assert not (tmp_path / "logs" / "first.log").exists()


def test_a_benchmark_over_its_timeout_is_stopped_and_failed(tmp_path: Path) -> None:
    benches = [_bench("hang", "import time; time.sleep(60)")]
    code = cli.run_all(["--timeout", "1"], benches, results_dir=tmp_path,
                       logs=tmp_path / "logs", is_root=True)
    assert code == 1
    assert "stopped after the --timeout of 1 s" in (tmp_path / "summary.md").read_text()


def test_summary_rows_of_the_benchmarks_follow_the_contract() -> None:
    from benchmarks import (
        bench_argo,
        bench_dataservice_catalog,
        bench_dataservice_throughput,
        bench_dataservice_traffic,
        bench_scaling,
    )

    argo = bench_argo.summary_rows({"oceandata": 2.0, "argopy": 1.0},
                                   {"oceandata": 20.0, "argopy": 900.0}, 1028, 3)
    assert argo[0]["ratio"] == 0.5 and argo[0]["met"] is False
    assert argo[0]["note"].startswith("missed: oceandata 2.00x argopy's time")
    alone = bench_argo.summary_rows({"oceandata": 2.0}, {"oceandata": 20.0}, 1028, 3)
    assert alone[0]["met"] is None and "not installed" in alone[0]["note"]

    traffic = bench_dataservice_traffic.summary_rows([
        {"method": "small subset", "clients": 1, "requests": 40, "rps": 10.0, "p50_ms": 50.0,
         "p95_ms": 80.0, "peak_mib": 400.0},
        {"method": "estimate own", "clients": 1, "requests": 40, "p50_ms": 1.0,
         "p95_ms": 2.0}])
    assert traffic[0]["ratio"] == pytest.approx(0.02) and traffic[0]["met"] is True

    Row = bench_dataservice_catalog.Row
    routes = [Row("SearchIndex.search (in-process)", [0.01] * 19 + [0.5]),
              Row("HTTP GET datasets.json (first page of 1000)", [1.0]),
              Row("HTTP GET stac/search", available=False)]
    small = bench_dataservice_catalog.summary_rows(routes, 2000, 300.0, 500.0)
    assert [r["case"] for r in small] == ["SearchIndex.search (in-process)",
                                          "HTTP GET stac/search"]
    assert small[0]["met"] is None and small[0]["note"].startswith("not decided")
    full = bench_dataservice_catalog.summary_rows(routes, 10_000, 300.0, 500.0)
    assert full[0]["met"] is True and full[0]["ratio"] == pytest.approx(10.0)

    runs = {"opendap": [{"seconds": 1.0, "service_mib": 300.0}],
            "zarr": [{"seconds": 4.0, "service_mib": 310.0}], "download nc4": []}
    stream = {"bytes": 2e8, "seconds": 4.0, "first_byte": 2.0, "peak_mib": 600.0}
    thr = bench_dataservice_throughput.summary_rows(
        runs, {"download nc4": "failed: HTTP 500"}, 100.0, 100.0, stream, 200, "nc")
    assert [r["met"] for r in thr] == [None, False, None, None]
    assert thr[1]["ratio"] == pytest.approx(0.25) and thr[1]["note"].startswith("missed")
    assert thr[2]["note"] == "failed: HTTP 500"
    assert thr[3]["note"].startswith("not decided: a 200 MB download, not 1 GB, already above")
    big = bench_dataservice_throughput.summary_rows(
        runs, {}, 100.0, 100.0, {**stream, "bytes": 1.04e9}, 1024, "nc")
    assert big[3]["met"] is False and big[3]["note"].startswith("missed")

    def case(backend: str, workers: int, seconds: float | None) -> dict:
        return {"backend": backend, "workers": workers, "compute_seconds_median": seconds,
                "worker_peak_rss_mib": {"a": 100.0 * workers}, "failed": None,
                "skipped": None if seconds else "needs root"}

    scaling = bench_scaling.summary_rows({
        "size": "small", "repeat": 1, "data": {"gb": 0.75},
        "cases": [case("local", 1, 10.0), case("local", 2, 6.0), case("slurm", 1, None),
                  case("slurm", 2, None)]})
    assert [r["ratio"] for r in scaling] == [None, None, pytest.approx(10 / 6)]
    assert "needs root" in scaling[0]["note"] and scaling[2]["met"] is None

    for r in (*argo, *alone, *traffic, *small, *full, *thr, *big, *scaling):
        assert summary.problem(r) is None, r


def test_file_dates_prefer_the_date_recorded_in_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "dated", {"started": "2026-12-04T22:09:52+00:00", "summary": []})
    _write(tmp_path, "naive", {"date": "2026-12-03T10:00:00"})
    plain = _write(tmp_path, "plain", {"summary": []})
    os.utime(plain, (0, 86400))
    dates = summary.file_dates(tmp_path, ["dated", "naive", "plain", "none"])
    assert dates["dated"] == datetime(2026, 12, 4, 22, 9, 52, tzinfo=UTC)
    assert dates["naive"] == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert dates["plain"] == datetime(1970, 1, 2, tzinfo=UTC)
    assert dates["none"] is None


def test_an_unwritable_summary_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = cli.run_all(["--no-run"], [], results_dir=tmp_path,
                       summary_path=blocker / "summary.md")
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("cannot write the summary:")
    assert "Traceback" not in err
