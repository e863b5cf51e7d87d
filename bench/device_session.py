"""One lent-GPU session, prepared ahead: the GPU step benchmark, then the study grids, the
privacy-utility grid and the MIND comparison side by side, all under one deadline.

    python bench/device_session.py --out DIR [--minutes 5] [--hard-minutes 8.3] [--jobs 12] [--grids matched unimodal-lr sensitivity main greedy]

Why one script: a lent machine is held for minutes, so everything that needs it runs in one
call, in priority order, and whatever finished by the deadline is packed into at most 7
archives under DIR (the device tool returns at most 8 files of 16 MiB). Everything it runs is
the product's own command lines: `evaluation.study`'s local backend
(evaluation/study/local.py), `evaluation.privacy_tradeoff run` and `bench/distill_compare.py`,
each resumable, so a second call on the same machine continues. The study reports are made
there (the study twin's phenotyping predictions are too large to bring back). Unpack the
archives in the repository root here, then `python -m evaluation.study report GRID
--from-summary --docs docs/results.md`, `python -m evaluation.privacy_tradeoff aggregate --docs
docs/results.md`, and `python bench/distill_compare.py --out bench/out/distill-<task> --report`
(which reuses the finished runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the stage processes it starts import this checkout's packages (a bare machine has no install)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

log = logging.getLogger("device_session")
ARCHIVE_LIMIT = 15 * 2**20
MAX_ARCHIVES = 7


def environment() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def background(command: list[str], log_file: Path) -> subprocess.Popen:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handle = log_file.open("w")
    log.info("started %s", " ".join(command))
    return subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)


def chunks(files: list[Path], limit: int) -> list[list[Path]]:
    """Consecutive groups of files whose sizes add up to at most `limit` (a bigger file alone)."""
    groups: list[list[Path]] = [[]]
    size = 0
    for path in files:
        if groups[-1] and size + path.stat().st_size > limit:
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += path.stat().st_size
    return [group for group in groups if group]


def pack(out: Path, groups: dict[str, list[Path]]) -> list[str]:
    """Tar.xz archives of whole files (paths relative to the repo), each under ARCHIVE_LIMIT
    before compression; checkpoints and DVCLive folders stay behind."""
    written: list[str] = []
    for group, roots in groups.items():
        files = sorted(path for root in roots if root.exists()
                       for path in ([root] if root.is_file() else root.rglob("*"))
                       if path.is_file() and path.suffix != ".pt" and "dvclive" not in path.parts)
        for part, members in enumerate(chunks(files, ARCHIVE_LIMIT)):
            name = f"{group}-{part}.tar.xz"
            with tarfile.open(out / name, mode="w:xz", preset=1) as archive:
                for path in members:
                    archive.add(path, arcname=str(path.relative_to(ROOT)))
            written.append(name)
    return written


def start_reports(grids: list, logs: Path) -> dict[str, subprocess.Popen]:
    """`study report` for every grid (test split; validation too for a grid with a choice rule,
    whose settings are chosen on it), side by side, each scoring its cells in several processes."""
    commands = {}
    for grid in grids:
        for split in ("test", "val") if grid.choose else ("test",):
            commands[f"{grid.name}-{split}"] = [sys.executable, "-m", "evaluation.study", "report", grid.name,
                                                "--no-collect", "--no-index", "--split", split,
                                                "--report-jobs", "8" if grid.base else "3"]
    return {name: background(command, logs / f"report-{name}.log") for name, command in commands.items()}


def finish_reports(running: dict[str, subprocess.Popen], hard_stop: float) -> dict[str, int]:
    codes = {}
    for name, process in running.items():
        try:
            codes[name] = process.wait(timeout=max(1.0, hard_stop - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            codes[name] = process.wait()
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=5.0, help="start no study training after this")
    parser.add_argument("--hard-minutes", type=float, default=8.3,
                        help="stop the side jobs and the reports at this point, then pack")
    parser.add_argument("--jobs", type=int, default=12, help="study trainings at a time")
    parser.add_argument("--grids", nargs="+", default=["matched", "unimodal-lr", "sensitivity", "main", "greedy"])
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--no-side", action="store_true", help="study grids only (no privacy, no MIND)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="override for every training")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    started = time.monotonic()
    deadline = started + 60 * args.minutes
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    logs = ROOT / "runs" / "device" / "logs"
    summary: dict = {"environment": environment(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    log.info("environment: %s", summary["environment"])

    from omegaconf import OmegaConf

    from data_prep.config import load_config

    config = OmegaConf.to_container(load_config(ROOT / "params.yaml"), resolve=True)
    tasks = [str(task) for task in config["task"]["names"]]

    if not args.skip_bench and summary["environment"]["cuda"]:
        bench = ROOT / "runs" / "device" / "step_time.json"
        for task in ("phenotyping",):
            try:
                done = subprocess.run([sys.executable, "bench/step_time.py", "--task", task, "--steps", "20",
                                       "--warmup", "3", "--out", str(bench.with_name(f"step_time_{task}.json"))],
                                      cwd=ROOT, capture_output=True, text=True, timeout=90)
                log.info("step bench %s: exit %d %s", task, done.returncode, (done.stdout + done.stderr)[-600:])
            except subprocess.TimeoutExpired:
                log.warning("step bench %s: timed out", task)
        summary["bench_seconds"] = round(time.monotonic() - started, 1)

    try:
        run_everything(args, summary, started, deadline, config, tasks, logs)
    finally:
        pack_results(args, summary, started, logs, out)


def run_everything(args, summary: dict, started: float, deadline: float, config: dict, tasks: list[str],
                   logs: Path) -> None:
    from evaluation.study.__main__ import study_dir
    from evaluation.study.grids import get_grid
    from evaluation.study.local import prepare_data, run_local

    grids = [get_grid(name) for name in args.grids]
    work = ROOT / "runs" / "study-local"
    # the default twin first: the side jobs read it, and so do the default-twin grids
    default_grid = next((grid for grid in grids if not grid.base), get_grid("greedy"))
    prepare_data(default_grid, ROOT, work, args.extra, data_jobs=8)
    summary["default_data_seconds"] = round(time.monotonic() - started, 1)
    side: list[subprocess.Popen] = []
    if not args.no_side:
        for task in tasks:
            side.append(background([sys.executable, "-m", "evaluation.privacy_tradeoff", "run", "--tasks", task,
                                    "--epsilons", "none", "8", "3", "1", "train.threads=1",
                                    "privacy.audit.reference_models=1", "train.amp=off", *args.extra],
                                   logs / f"privacy-{task}.log"))
            side.append(background([sys.executable, "bench/distill_compare.py", "--out", f"bench/out/distill-{task}",
                                    "--tasks", task, "--seeds", "1002", "1003", "1004", "--threads", "1",
                                    *args.extra], logs / f"distill-{task}.log"))
    counts: dict = {}
    reports: dict[str, subprocess.Popen] = {}
    finished_at: dict[str, float] = {}

    def grid_done(grid) -> None:  # its report starts while the other grids train
        finished_at[grid.name] = round(time.monotonic() - started, 1)
        reports.update(start_reports([grid], logs))

    runner = threading.Thread(target=lambda: counts.update(run_local(
        grids, ROOT, work, {grid.name: study_dir(config, grid.name) for grid in grids}, tasks,
        jobs=args.jobs, extra=["train.threads=1", *args.extra], deadline=deadline, data_jobs=4,
        on_grid_done=grid_done)))
    runner.start()
    runner.join()
    summary["study"] = counts
    summary["grid_finished_seconds"] = finished_at
    summary["study_seconds"] = round(time.monotonic() - started, 1)
    hard_stop = started + 60 * args.hard_minutes
    for process in side:  # the side jobs run on while the reports are made, up to the hard stop
        try:
            process.wait(timeout=max(0.0, hard_stop - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        summary.setdefault("side", []).append({"command": " ".join(map(str, process.args[1:6])),
                                               "exit": process.returncode,
                                               "seconds": round(time.monotonic() - started, 1)})
    summary["reports"] = finish_reports(reports, hard_stop + 40)  # reports matter more than side jobs


def pack_results(args, summary: dict, started: float, logs: Path, out: Path) -> None:
    from evaluation.study.grids import get_grid

    grids = [get_grid(name) for name in args.grids]
    work = ROOT / "runs" / "study-local"
    summary["total_seconds"] = round(time.monotonic() - started, 1)
    (ROOT / "runs" / "device" / "summary.json").write_text(json.dumps(summary, indent=2))
    reports = ROOT / "reports" / "study"
    # phenotyping predictions stay behind (25 labels x 3 heads: ~1 MB a cell at the study twin's
    # size, over the tool's 64 MiB); the reports made here from them come back
    study_files = [path for grid in grids for path in (reports / grid.name).rglob("*") if path.is_file()
                   and not (path.name == "predictions.parquet" and path.parent.name == "phenotyping")]
    written = pack(out, {
        "study": study_files,
        "side": [ROOT / "runs" / "privacy_tradeoff", *sorted((ROOT / "bench" / "out").glob("distill-*")),
                 ROOT / "runs" / "device"],
        "logs": [work / "logs", logs],
    })
    if len(written) > MAX_ARCHIVES:
        log.warning("%d archives: only the first %d come back", len(written), MAX_ARCHIVES)
    print(json.dumps({**summary, "archives": written}, indent=1))


if __name__ == "__main__":
    main()
