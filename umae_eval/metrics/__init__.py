"""Feature metrics: spectra (effective rank, RankMe, alpha-ReQ, feature std) and geometry
(alignment, uniformity, the U-MAE uniformity term). Inputs are ``(N, D)`` arrays or tensors."""

from umae_eval.metrics.geometry import alignment, umae_uniformity, uniformity
from umae_eval.metrics.spectrum import (
    AlphaReqResult,
    SpectrumSummary,
    alpha_req,
    effective_rank,
    normalized_feature_std,
    rankme,
    singular_values,
    spectrum_summary,
)

__all__ = [
    "AlphaReqResult",
    "SpectrumSummary",
    "alignment",
    "alpha_req",
    "effective_rank",
    "normalized_feature_std",
    "rankme",
    "singular_values",
    "spectrum_summary",
    "umae_uniformity",
    "uniformity",
]
