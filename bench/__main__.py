"""Run benchmarks and write each one's figures as JSON: `python -m bench [NAME ...] --out DIR`.

    python -m bench --list
    python -m bench predictor_accuracy search_efficiency --out bench-results --run digits
    python -m bench export_front --search main --out bench-results -- --precisions int8

Each bench runs as its own process (`python bench/NAME.py ...`, progress on stderr); its last
stdout line (JSON) goes to DIR/NAME.json with the exact command, the wall time, the versions,
the commit and the time it finished, so that the README's and `hwnas report --bench DIR`'s
figures come from a run anyone can repeat (docs/results.md records them: bench/results_doc.py).
Arguments after `--` go to every bench named, and so do options this runner does not know
(`python -m bench predictor_transfer --file MEAS.jsonl`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name -> which of the common options it takes
BENCHES: dict[str, tuple[str, ...]] = {
    "predictor_accuracy": ("db", "run"),
    "search_efficiency": ("db", "run"),
    "weight_sharing": ("db", "run"),
    "export_front": ("db", "search"),
    "dashboard_render": (),
    "train_throughput": (),
    "host_memory": (),
    "closed_loop": ("db", "run"),
    "stream_scale": (),
    "cli_startup": (),
    "predictor_transfer": (),
    "predictor_scale": ("db",),
    "protocol_repeat": (),
}
DEFAULT = ("search_efficiency", "weight_sharing", "dashboard_render", "train_throughput")


def command_for(name: str, args: argparse.Namespace, extra: list[str]) -> list[str]:
    cmd = [sys.executable, f"bench/{name}.py"]
    for opt in BENCHES[name]:
        value = getattr(args, opt)
        if value is not None:
            cmd += [f"--{opt}", value]
    if name == "export_front":
        cmd += ["--out", str(args.out / "export_front")]
    return cmd + extra


def run_one(name: str, cmd: list[str]) -> dict:
    shown = shlex.join(["python", *cmd[1:]])
    print(f"bench {name}: {shown}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench {name} failed (exit {proc.returncode}): {shown}")
    result = json.loads(lines[-1])
    return result | {
        "command": shown,
        "seconds": round(seconds, 1),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "versions": versions(),
    }


def commit() -> str | None:
    """The checkout's commit (short hash), or None outside a git checkout."""
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        proc = subprocess.run(git, cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def versions() -> dict:
    from hwnas.search.services.report import versions as v

    return v()


COMMON = ("--out", "--db", "--run", "--search")  # options of this runner, with a value


def split_own(argv: list[str]) -> tuple[list[str], list[str]]:
    """This runner's arguments, and the bench's own options given after its name without `--`
    (`python -m bench predictor_transfer --file F`): every option but the common ones, with
    the values that follow it. Before a bench is named, every option is the runner's."""
    own: list[str] = []
    extra: list[str] = []
    named, i = False, 0
    while i < len(argv):
        a = argv[i]
        flag = a.split("=", 1)[0]
        if not a.startswith("--") or flag in COMMON or a == "--list" or not named:
            take = 2 if a in COMMON else 1  # `--out DIR`; `--out=DIR` is one token
            own += argv[i : i + take]
            named = named or not a.startswith("--")
            i += take
            continue
        extra.append(a)
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            extra.append(argv[i])
            i += 1
    return own, extra


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    argv, more = split_own(argv)
    extra = more + extra
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"benches to run (default: {', '.join(DEFAULT)})")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for NAME.json")
    p.add_argument("--db", default=None, help="database URL for the benches that read one")
    p.add_argument("--run", default=None, help="training run (default: each bench's own)")
    p.add_argument("--search", default=None, help="search whose front export_front exports")
    p.add_argument("--list", action="store_true", help="list the benches and exit")
    return p.parse_args(argv), extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    if args.list:
        print("\n".join(BENCHES))
        return 0
    names = args.names or list(DEFAULT)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"bench: unknown {unknown}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    if "export_front" in names and not args.search:
        print("bench: export_front needs --search NAME (the search whose front to export)",
              file=sys.stderr)  # fmt: skip
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        result = run_one(name, command_for(name, args, extra))
        (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"bench {name}: wrote {args.out / f'{name}.json'}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
