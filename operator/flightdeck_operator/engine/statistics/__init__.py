"""Statistical gates (pure, stdlib ``math`` only): bounds that know how much evidence they rest on.

* ``proportions``: failure-rate bounds (Clopper-Pearson, Wilson, Newcombe, the beta-binomial
  confidence sequence);
* ``latency_bins`` and ``quantile_bounds``: the log-bucket latency histogram and distribution-free
  quantile bounds from it;
* ``means``: cost per run and mean latency from sums and second moments;
* ``gates``: one gate answered Pass / Fail / Inconclusive; ``runs_needed``: how many more runs, and when.

See docs/statistics-engine-notes.md for the formulas and their sources.
"""

from .gates import (
    GateResult,
    GateSpec,
    LimitKind,
    Method,
    Metric,
    SideStatistics,
    Verdict,
    evaluate_gate,
)
from .latency_bins import (
    MAX_RELATIVE_ERROR,
    ZERO_BIN,
    Histogram,
    bin_lower_edge,
    bin_of,
    bin_upper_edge,
    bin_value,
    histogram_of,
    largest_integer_in_bin,
    merge_histograms,
    quantile_estimate,
)
from .means import (
    PerThousandTokenPrices,
    SampleMoments,
    TokenMoments,
    cost_moments,
    fieller_ratio_interval,
    fixed_mean_interval,
    sequential_mean_interval,
)
from .proportions import (
    Interval,
    beta_binomial_sequence,
    clopper_pearson,
    newcombe_difference,
    wilson,
)
from .quantile_bounds import quantile_bounds
from .runs_needed import DEFAULT_POWER, RunsNeeded, eta, runs_needed, runs_per_hour

__all__ = [
    "DEFAULT_POWER",
    "MAX_RELATIVE_ERROR",
    "ZERO_BIN",
    "GateResult",
    "GateSpec",
    "Histogram",
    "Interval",
    "LimitKind",
    "Method",
    "Metric",
    "PerThousandTokenPrices",
    "RunsNeeded",
    "SampleMoments",
    "SideStatistics",
    "TokenMoments",
    "Verdict",
    "beta_binomial_sequence",
    "bin_lower_edge",
    "bin_of",
    "bin_upper_edge",
    "bin_value",
    "clopper_pearson",
    "cost_moments",
    "eta",
    "evaluate_gate",
    "fieller_ratio_interval",
    "fixed_mean_interval",
    "histogram_of",
    "largest_integer_in_bin",
    "merge_histograms",
    "newcombe_difference",
    "quantile_bounds",
    "quantile_estimate",
    "runs_needed",
    "runs_per_hour",
    "sequential_mean_interval",
    "wilson",
]
