"""Data-quality stage: GX suites per dataset and stage, quarantine with reasons, profiling.

``validate_batch`` splits a transformed batch into loadable rows and quarantine (R9);
``mask_citizen_id`` / ``mask_name`` mask personal data for reports and logs (R4);
``profile_frame`` assesses a raw extract before the first load (R13).
"""

from sapnhap.quality.masking import mask_citizen_id, mask_name
from sapnhap.quality.profile import profile_frame
from sapnhap.quality.validate import QualityGateError, ValidationOutcome, decide, validate_batch

__all__ = [
    "QualityGateError",
    "ValidationOutcome",
    "decide",
    "mask_citizen_id",
    "mask_name",
    "profile_frame",
    "validate_batch",
]
