"""Private training (DP-SGD with Opacus, the patient as the unit of privacy) and the
membership-inference audit's training side.

`PrivateTraining` is an option of the engine (training/engine.py), switched on by
`privacy.enabled` for the regimes that train with the supervised objective (`supervised`,
`unimodal`); docs/privacy.md says what it guarantees and what it does not.
"""

from training.privacy.engine import PrivateTraining, refusal_for_balancer
from training.privacy.settings import PrivacySettings

__all__ = ["PrivacySettings", "PrivateTraining", "refusal_for_balancer"]
