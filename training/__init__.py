"""Training: the loop (`training.train`), the global LR schedule, balancers, checkpoints and DDP helpers.

OpenMP threads sleep rather than spin while they wait (OMP_WAIT_POLICY=PASSIVE) unless the
caller says otherwise. It must be set before torch starts its OpenMP runtime, hence here:
`python -m training.train` imports this package first. On the 2-core machine, with the other
core busy, a phenotyping step on 2 threads took 3.8 s spinning and 2.5 s sleeping, and about
1.05 s either way on an idle machine (bench/RESULTS.md, "CPU threads"). The policy changes
when threads wait, never what they compute.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
