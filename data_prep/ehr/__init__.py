"""EHR preparation: raw MIMIC-IV tables -> events -> task cohorts -> hourly 76-feature tensors.

The stage modules (data_prep.extract_ehr, build_tasks, ehr_tensors) are thin; the logic lives
here in small modules that tests call directly.
"""
