"""MIND comparison: student with and without distillation, teachers, ensembles, the default model.

    python bench/distill_compare.py --out bench/out/distill [--tasks in_hospital_mortality]
        [--seeds 1002 1003 1004] [key=value ...]     # e.g. data.interim_dir=... data.processed_dir=...

Per task: trains the teachers once (training/teachers.py, as teachers@<task> does), then for
each seed the distilled student (regime=distill), the same student without distillation
(regime.weight=0) and the default multi-head model (regime=supervised, the configured
model); scores every model's heads and routed prediction on the paired and partial test sets
(evaluation.assess), each teacher and each teacher ensemble (mean of the members'
probabilities) too; counts parameters and times CPU inference per test stay (one thread).
Resumable: a finished run (its predictions.parquet) is not trained again. Writes
<out>/rows.json (one row per task, model, seed, set, head), <out>/comparison.md (the tables of
evaluation/distill_report.py, for docs/results.md) and <out>/log.txt.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from data_prep import paths
from data_prep.dataset import MultimodalDataset, loader_for
from data_prep.params import checked_compose
from evaluation.assess import EvalSettings, evaluate_set
from evaluation.distill_report import comparison_tables, distillation_verdict, verdict_text
from evaluation.inputs import predictions_from_frame
from training.checkpoint import load_checkpoint
from training.predictions import move_batch
from training.regimes import build_regime
from training.teacher_logits import read_teacher_logits
from training.teachers import enabled_members, member_config, train_teachers
from training.train import fit

log = logging.getLogger("distill_compare")
SETTINGS = EvalSettings(n_bootstrap=50, seed=1002)


def score(frame: pd.DataFrame, where: str) -> list[dict]:
    """Point AUROC/AUPRC per head on both test sets (macro over labels)."""
    predictions = predictions_from_frame(frame, where)
    rows = []
    for name in ("test_paired", "test_partial"):
        result, _ = evaluate_set(predictions, name, SETTINGS)
        for head, head_result in result.heads.items():
            rows.append({"set": name, "head": head, "auroc": head_result.summary["auroc"].value,
                         "auprc": head_result.summary["auprc"].value})
    return rows


def n_parameters(state: dict) -> int:
    """Trainable parameters (the state dict without batch-norm statistics)."""
    return int(sum(v.numel() for k, v in state.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))))


@torch.no_grad()
def ms_per_stay(cfg: DictConfig, run_dir: Path, task: str) -> float:
    """CPU inference time per test stay (partial set, batch 64, one thread, after one warm-up batch)."""
    regime = build_regime(cfg)
    dataset = MultimodalDataset(task, "test", "partial", cfg, train=False)
    model = regime.build_model(len(dataset.label_names), dataset.ehr_features, channels_last=False)
    model.load_state_dict(load_checkpoint(run_dir / "model.pt", map_location="cpu")["model"])
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batches = [move_batch(b, torch.device("cpu")) for b in loader_for(dataset, batch_size=64, num_workers=0,
                                                                         train=False)]
        model(batches[0])
        started = time.perf_counter()
        for batch in batches:
            model(batch)
        return 1000 * (time.perf_counter() - started) / len(dataset)
    finally:
        torch.set_num_threads(threads)


def ensemble_frame(cfg: DictConfig, task: str, modality: str) -> pd.DataFrame:
    """The test predictions of one modality's ensemble: the mean of its members' probabilities."""
    table = read_teacher_logits(paths.teacher_logits_path(cfg, task), task)
    members = [m for m, mod in table.members.items() if mod == modality]
    probs = np.mean([1 / (1 + np.exp(-table.logits[m])) for m in members], axis=0)
    some_member = paths.teachers_dir(cfg, task) / members[0] / "predictions.parquet"
    ids = pd.read_parquet(some_member, columns=["stay_id", "subject_id"])
    test = table.split == "test"
    frame = pd.DataFrame({"stay_id": table.stay_ids[test], "split": "test", "has_cxr": table.has_cxr[test]})
    frame = frame.merge(ids, on="stay_id", how="left")
    for k, label in enumerate(table.label_names):
        frame[f"y_{label}"] = table.labels[test, k]
        values = pd.array(probs[test, k], dtype="Float32")
        frame[f"p_{modality}_{label}"] = values
        if modality == "ehr":
            frame[f"p_routed_{label}"] = values
    return frame


def run_config(base: DictConfig, out: Path, model: str, seed: int) -> DictConfig:
    overrides: dict = {"train": {"seed": seed, "runs_dir": str(out / model / f"seed{seed}")}}
    if model == "default":
        overrides["regime"] = {"name": "supervised", "objective": "supervised"}
    elif model == "student_plain":
        overrides["regime"] = {"weight": 0.0}
    cfg = OmegaConf.merge(base, overrides)
    link = Path(cfg.train.runs_dir) / "teachers"  # the student reads <runs_dir>/teachers/<task>
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((Path(base.train.runs_dir) / "teachers").resolve(), target_is_directory=True)
    if model == "default":  # the supervised regime takes none of the distill regime's settings
        cfg.regime = {"name": "supervised", "objective": "supervised"}
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/distill"))
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1002, 1003, 1004])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--report", action="store_true",
                        help="also put this run's rows into <eval.reports_dir>/distillation/rows.json (replacing "
                             "those of its tasks) for python -m evaluation.report")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "log.txt")])
    torch.set_num_threads(args.threads)
    base = OmegaConf.merge(OmegaConf.create(checked_compose(["regime=distill"])),
                           OmegaConf.from_dotlist(args.overrides))
    base.train.runs_dir = str(args.out / "teachers_root")
    rows_path = args.out / "rows.json"
    rows: list[dict] = json.loads(rows_path.read_text()) if rows_path.is_file() else []
    done = {(r["task"], r["model"], r["seed"]) for r in rows}

    def add(task: str, model: str, seed: int, frame: pd.DataFrame, where: str, parameters: int | None,
            ms: float | None) -> None:
        for row in score(frame, where):
            rows.append({"task": task, "model": model, "seed": seed, **row, "parameters": parameters,
                         "ms_per_stay": ms})
        done.add((task, model, seed))
        rows_path.write_text(json.dumps(rows, indent=1))

    for task in args.tasks or list(base.task.names):
        started = time.perf_counter()
        summary = train_teachers(base, task)
        log.info("%s: teachers in %.0f s", task, time.perf_counter() - started)
        for name, member in enabled_members(base).items():
            model = f"teacher_{name}"
            if (task, model, 0) in done:
                continue
            run_dir = paths.teachers_dir(base, task) / name
            member_cfg = member_config(base, member)
            add(task, model, 0, pd.read_parquet(run_dir / "predictions.parquet"), str(run_dir),
                summary["members"][name]["parameters"], ms_per_stay(member_cfg, run_dir, task))
        for modality in ("ehr", "cxr"):
            if (task, f"{modality}_ensemble", 0) not in done:
                members = [n for n, m in enabled_members(base).items() if m["modality"] == modality]
                add(task, f"{modality}_ensemble", 0, ensemble_frame(base, task, modality), "ensemble",
                    sum(summary["members"][n]["parameters"] for n in members), None)
        for seed in args.seeds:
            for model in ("student_distill", "student_plain", "default"):
                if (task, model, seed) in done:
                    continue
                cfg = run_config(base, args.out, model, seed)
                started = time.perf_counter()
                result = fit(cfg, task, resume=True)
                seconds = time.perf_counter() - started
                state = load_checkpoint(result.run_dir / "model.pt", map_location="cpu")["model"]
                ms = ms_per_stay(cfg, result.run_dir, task) if seed == args.seeds[0] else None
                add(task, model, seed, pd.read_parquet(result.run_dir / "predictions.parquet"),
                    str(result.run_dir), n_parameters(state), ms)
                log.info("%s %s seed %d: %.0f s", task, model, seed, seconds)
    tables = comparison_tables(rows)
    verdict = distillation_verdict(rows)
    if args.report:  # the index report's section (evaluation/index_report.py)
        report_rows = Path(base.eval.reports_dir) / "distillation" / "rows.json"
        report_rows.parent.mkdir(parents=True, exist_ok=True)
        # this run's tasks replace theirs; other tasks' rows (another --out, another run) stay
        kept = [row for row in (json.loads(report_rows.read_text()) if report_rows.is_file() else [])
                if row["task"] not in {r["task"] for r in rows}]
        report_rows.write_text(json.dumps(kept + rows, indent=1))
    text = [f"Run {time.strftime('%Y-%m-%d')}, {platform.machine()}, {torch.get_num_threads()} torch thread(s), "
            f"torch {torch.__version__}; seeds {', '.join(map(str, args.seeds))}; "
            f"overrides: {' '.join(args.overrides) or 'none'}.", ""]
    for task, table in tables.items():
        text += [f"### {task}", "", table, "",
                 verdict_text(verdict.get(task, {})), ""]
    (args.out / "comparison.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
