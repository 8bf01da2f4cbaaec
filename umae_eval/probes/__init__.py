"""Probes of frozen features: mean classifier (Sec. 4.1), weighted kNN, linear probe.

Every probe takes ``(train_x (N, D), train_y (N,), test_x (M, D), test_y (M,))`` as numpy
arrays or torch tensors and returns a :class:`ProbeResult` (accuracy in percent, the settings
that reproduce it, extras); ``*_accuracy`` helpers return just the float.
"""

from umae_eval.probes.knn import knn_accuracy, knn_probe
from umae_eval.probes.linear import linear_probe
from umae_eval.probes.mean import mean_classifier, mean_classifier_accuracy
from umae_eval.probes.result import ProbeResult

__all__ = [
    "ProbeResult",
    "knn_accuracy",
    "knn_probe",
    "linear_probe",
    "mean_classifier",
    "mean_classifier_accuracy",
]
