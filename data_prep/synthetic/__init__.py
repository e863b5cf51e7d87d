"""The synthetic MIMIC-IV + MIMIC-CXR-JPG twin: a seeded, format-faithful stand-in for the real data.

Modules follow the generation order: `settings` (validated knobs), `latent` (patients,
admissions, stays and their hidden conditions), `catalog` (itemids, ICD codes), `ehr_tables`
and `chartevents` (MIMIC-IV tables), `cxr_studies` and `cxr_images` (MIMIC-CXR-JPG), `writers`
(deterministic gzip CSV) and `twin` (the orchestration). docs/synthetic-data.md explains the model.
"""

from data_prep.synthetic.settings import TwinSettings
from data_prep.synthetic.twin import generate_twin

__all__ = ["TwinSettings", "generate_twin"]
