"""Clinical-paper style evaluation of multi-label ECG classifiers.

Per-label AUC / average precision / sensitivity / specificity / PPV / NPV / F1 at validation-chosen thresholds, with
(patient-level) bootstrap, Wilson and DeLong intervals, paired model comparison, and JSON/CSV/HTML reports.
"""
from ecgfm.evaluation.bootstrap import BootstrapReplicates, bootstrap_replicates
from ecgfm.evaluation.delong import DeLongAUC, DeLongComparison, delong_auc, delong_covariance, delong_test
from ecgfm.evaluation.evaluate import ComparisonResult, EvaluationResult, compare_scores, evaluate_scores
from ecgfm.evaluation.intervals import percentile_interval, wilson_interval
from ecgfm.evaluation.metrics import average_precision, micro_auc, roc_auc
from ecgfm.evaluation.report import write_comparison, write_evaluation
from ecgfm.evaluation.thresholds import ThresholdRule, choose_threshold, choose_thresholds, parse_threshold_rule

__all__ = [
    "BootstrapReplicates", "bootstrap_replicates",
    "DeLongAUC", "DeLongComparison", "delong_auc", "delong_covariance", "delong_test",
    "ComparisonResult", "EvaluationResult", "compare_scores", "evaluate_scores",
    "percentile_interval", "wilson_interval",
    "average_precision", "micro_auc", "roc_auc",
    "write_comparison", "write_evaluation",
    "ThresholdRule", "choose_threshold", "choose_thresholds", "parse_threshold_rule",
]
