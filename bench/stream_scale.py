"""Memory that does not grow with the folder: streaming 2,000 and 20,000 224-px JPEGs.

Run from the repository root (resumable: the folders, and each finished part's figures, stay
in the work folder, and a second run goes on from there):

    PYTHONPATH=. python bench/stream_scale.py --work DIR [--sizes 2000,20000] [--minutes 10]

1. Generates each folder once: 10 classes of 224x224 JPEGs (smooth colour fields, noise).
2. Times the loader alone on each: the streaming loader's training batches (decode,
   random-resized crop, flip, at each step's resolution) with the default workers, for
   `--loader-seconds`, without training: images/s.
3. Trains `ofa-mbv3` on each with `hwnas train --loader stream` (default batch, one process)
   for `--minutes`, then kills it: the peak resident memory of the training process, and of it
   with its loader workers, sampled every 0.5 s from /proc; the training step's images/s
   (batch / median seconds of the steps, the slowest one per resolution, a compile, left out)
   and its share of time waiting for data, from the progress bar's last figures.

Goal (issue 21): the peaks of the two folders differ by less than 300 MB.
One JSON object is the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLASSES = 10


def make_folder(root: Path, n: int, side: int = 224) -> Path:
    """`n` JPEGs in `CLASSES` class folders; files already there are kept (resumable)."""
    from PIL import Image

    if (root / ".complete").exists():
        return root
    for i in range(n):
        c = i % CLASSES
        path = root / f"class{c}" / f"{i:06d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        field = rng.random((4, 4, 3)) * 0.5 + 0.5 * np.eye(3)[c % 3] * (c / CLASSES)
        img = np.kron(field, np.ones((side // 4, side // 4, 1)))
        img = (img * 200 + rng.normal(0, 12, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(path, quality=90)
        if i % 1000 == 999:
            print(f"{root.name}: {i + 1}/{n} images", file=sys.stderr, flush=True)
    (root / ".complete").touch()
    return root


def loader_alone(folder: Path, space_name: str, seconds: float) -> dict:
    from hwnas.search.services.training import default_batch_size
    from hwnas.supernet.folder import index_folder
    from hwnas.supernet.loader import default_workers, train_batches
    from hwnas.supernet.space import load_space

    space = load_space(space_name)
    batch, workers = default_batch_size(space), default_workers()
    index = index_folder(folder, seed=0, val_fraction=0.15, test_fraction=0.15)
    it = train_batches(index, space.resolutions, 0, 10_000, batch, workers=workers)
    next(it)  # workers start
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        n += len(next(it)["label"])
    rate = n / (time.perf_counter() - t0)
    it.close()
    return {"loader_images_per_s": rate, "workers": workers, "batch": batch}


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            out += [k, *children(k)]
    return out


STEP_RE = re.compile(r"data=(\d+)%[^\n\r]*?step=([\d.]+)s")


def train_for(folder: Path, work: Path, space: str, minutes: float) -> dict:
    part = work / f"train-{folder.name}"
    for old in ("hwnas.db", "stderr.txt"):
        (part / old).unlink(missing_ok=True)
    part.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "hwnas.search.cli", "train", "--dataset", "folder",
           "--data-dir", str(folder), "--space", space, "--epochs", "1", "--loader", "stream",
           "--name", "bench", "--runs-dir", str(part / "runs"),
           "--db", f"sqlite:///{part / 'hwnas.db'}"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    with (part / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=part, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)  # fmt: skip
        peak_main = peak_tree = 0.0
        t0 = time.time()
        while time.time() - t0 < 60 * minutes and proc.poll() is None:
            main = rss_mb(proc.pid)
            tree = main + sum(rss_mb(k) for k in children(proc.pid))
            peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):  # it may have finished the epoch
            os.kill(proc.pid, signal.SIGKILL)  # as a user's kill -9: the workers die with it,
        proc.wait()  # and the resource tracker unlinks their shared memory
        time.sleep(2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything left of the process group
    text = (part / "stderr.txt").read_text(errors="replace")
    if proc.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"hwnas train failed ({proc.returncode}): {text[-1500:]}")
    steps = [(int(a), float(b)) for a, b in STEP_RE.findall(text)]
    times = [b for _, b in _one_per_step(steps)]
    steady = sorted(times)[: max(len(times) - 4, 1)] if times else []
    return {
        "peak_rss_mb": round(peak_main),
        "peak_rss_with_workers_mb": round(peak_tree),
        "steps": len(times),
        "step_seconds_median": statistics.median(steady) if steady else None,
        "data_wait_share": steps[-1][0] / 100 if steps else None,
        "finished_epoch": proc.returncode == 0,
        "choice_line": next((ln for ln in text.splitlines() if ln.startswith("data:")), ""),
    }


def _one_per_step(found):
    """tqdm prints a step's postfix twice (before and after the bar moves): keep the changes."""
    out = []
    for item in found:
        if not out or out[-1] != item:
            out.append(item)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--loader-seconds", type=float, default=60.0)
    ap.add_argument("--space", default="ofa-mbv3")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if Path(args.space).is_file():  # a file: the training runs in its own folder
        args.space = str(Path(args.space).resolve())
    done_path = args.work / "results.json"
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    for n in map(int, args.sizes.split(",")):
        key = str(n)
        folder = make_folder(args.work / f"f{n}", n)
        entry = done.get(key, {})
        if "loader_images_per_s" not in entry:
            entry |= loader_alone(folder, args.space, args.loader_seconds)
        if "peak_rss_mb" not in entry:
            print(f"training on {n} images for {args.minutes} min", file=sys.stderr, flush=True)
            entry |= train_for(folder, args.work, args.space, args.minutes)
            if entry.get("step_seconds_median"):
                entry["step_images_per_s"] = entry["batch"] / entry["step_seconds_median"]
        done[key] = entry
        done_path.write_text(json.dumps(done, indent=1))
    peaks = [done[k]["peak_rss_mb"] for k in done]
    out = {"space": args.space, "minutes": args.minutes, "sizes": done,
           "peak_rss_spread_mb": max(peaks) - min(peaks)}  # fmt: skip
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
