"""How long the Pareto explorer takes to render with many candidates in the database.

    python bench/dashboard_render.py [--n 10000] [--baseline 100] [--repeats 5]

Two SQLite databases are filled side by side: one search with `--n` candidates and one with
`--baseline` (a default space's random subnets; accuracy and latency are synthetic, drawn so
that a front exists; this measures the dashboard, not a search). For each database:
(1) the page script alone through Streamlit's AppTest (query, frame, figure, serialisation);
(2) in headless Chromium (Debian's /usr/bin/chromium via Playwright), from navigation until
the plot's last point is drawn (SVG points, or the WebGL canvas that draws dominated points
when there are many). Medians of `--repeats` after a first load that is reported apart (cold
caches: the server's cached candidates frame, the browser's scripts), and the ratio to the
baseline. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwnas.db.models import Candidate, Run, Search
from hwnas.db.session import open_db
from hwnas.search.services.dashboard import free_port, stop, wait_serving
from hwnas.supernet.space import default_space

ROOT = Path(__file__).resolve().parent.parent


def fill(url: str, n: int, seed: int = 0) -> None:
    space, rng = default_space(), np.random.default_rng(seed)
    db = open_db(url)
    with db.write() as s:
        run = Run(name="bench", dataset="digits", space=space.to_dict(), config={},
                  status="finished")  # fmt: skip
        s.add(run)
        s.flush()
        search = Search(name="big", run_id=run.id, study_name="big", targets=["tflite-fp32-t1"],
                        budgets={"tflite-fp32-t1": 0.3}, sampler="tpe", seed=0)  # fmt: skip
        s.add(search)
        s.flush()
        rows = []
        for i in range(n):
            sub = space.sample(rng)
            cost = space.cost(sub)
            lat = 1e-7 * cost.macs * rng.uniform(0.9, 1.1)
            acc = 1 - 0.05 * np.exp(-cost.macs / 4e6) - rng.uniform(0, 0.01)
            rows.append(dict(search_id=search.id, trial_number=i, subnet_key=sub.key,
                             subnet=sub.to_dict(), accuracy=float(acc), params=cost.params,
                             macs=cost.macs, predicted_ms={"tflite-fp32-t1": lat},
                             measured_ms=None, feasible=lat <= 0.3, pareto=False))  # fmt: skip
        s.execute(Candidate.__table__.insert(), rows)
        search_id = search.id
    from hwnas.search.candidates import mark_pareto
    from hwnas.search.objective import Problem

    mark_pareto(db, search_id, Problem(("tflite-fp32-t1",), (("tflite-fp32-t1", 0.3),)))
    db.dispose()


def time_script(url: str, repeats: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    os.environ["HWNAS_DB"] = url
    out = []
    for _ in range(repeats + 1):  # the first run imports and warms caches
        at = AppTest.from_file(str(ROOT / "app" / "app_pages" / "pareto_page.py"),
                               default_timeout=120)  # fmt: skip
        t0 = time.perf_counter()
        at.run()
        out.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
    return out[1:]


# True once the plot holds `n` points and has drawn them: SVG points as elements, WebGL traces
# (used above charts.WEBGL_ABOVE points) once their canvas exists.
DRAWN = """n => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData) return false;
  const gl = gd._fullData.filter(t => t.type === 'scattergl');
  const glPoints = gl.reduce((a, t) => a + t.x.length, 0);
  const svgPoints = gd.querySelectorAll('.scatterlayer .point').length;
  const canvas = gd.querySelector('canvas.gl-canvas-context');
  return svgPoints + glPoints >= n && (!gl.length || !!canvas);
}"""


def time_browser(url: str, n: int, repeats: int) -> list[float] | None:
    if not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    port = free_port()
    cmd = [sys.executable, "-m", "hwnas.search.cli", "dashboard", "--port", str(port), "--db", url]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(port, proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            out = []
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/pareto")
                page.wait_for_function(DRAWN, arg=n, timeout=120_000)
                out.append(time.perf_counter() - t0)
            browser.close()
        return out
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hwnas-render-"))
    result: dict = {"n": args.n, "baseline": args.baseline, "repeats": args.repeats}
    for label, n in (("baseline", args.baseline), ("big", args.n)):
        url = f"sqlite:///{tmp / f'{label}.db'}"
        fill(url, n)
        script = time_script(url, args.repeats)
        browser = time_browser(url, n, args.repeats)
        result[label] = {
            "script_s": float(np.median(script)),
            "browser_s": float(np.median(browser[1:])) if browser else None,
            "browser_first_s": browser[0] if browser else None,  # cold: new caches, compiles
        }
        print(f"{label} ({n} candidates): {result[label]}", file=sys.stderr, flush=True)
    for k in ("script_s", "browser_s"):
        if result["big"][k] and result["baseline"][k]:
            result[f"{k}_ratio"] = result["big"][k] / result["baseline"][k]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
