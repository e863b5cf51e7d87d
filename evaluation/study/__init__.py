"""Studies: named grids of experiments run through DVC's queue, aggregated across seeds.

    python -m evaluation.study run quick        # queue what is missing, run it, wait (resumable)
    python -m evaluation.study status main      # what is done, queued, failed
    python -m evaluation.study report main      # aggregate -> reports/study/main/, docs/results.md

grids.py names the grids; runner.py drives `dvc exp run --queue` and `--run-all`; collect.py
reads each finished experiment's predictions and history from DVC; aggregate.py turns them
into means over seeds with CIs over patients and seeds; render.py writes the tables.
"""
