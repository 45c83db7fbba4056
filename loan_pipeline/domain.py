"""The analysis' own names: which columns feed the segments and the model, the strategies and
where a strategy comes from. Plain lists and strings, importable by ``core`` and ``schemas``
without Dagster (``settings`` holds the environment and the run configuration)."""

# The notebook's ten standardised columns.
NOTEBOOK_FEATURES: list[str] = [
    "Age",
    "Monthly_Income",
    "Loan_Amount",
    "Loan_Tenure",
    "Interest_Rate",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
    "Num_Missed_Payments",
    "Days_Past_Due",
]

# Clustering inputs of the recommended method: the notebook's columns without Age (fair-lending
# practice: segments, and the strategies read from them, should not be drawn along age; Gender is
# not an input either way).
CLUSTER_FEATURES: list[str] = [c for c in NOTEBOOK_FEATURES if c != "Age"]

# The verdict on a segmentation (``core.segmentation.KSelection``): every place that shows the
# segments says which (the cluster_model metadata, the charts, segment_profiles, the CLI).
STABLE_SEGMENTATION = "stable segmentation"
NO_STABLE_SEGMENTATION = "no stable segmentation"

# Pre-outcome inputs of the recommended model, listed on their own: a column added to the
# clustering inputs must not become a model input (and a possible leak) unasked.
RISK_NUMERIC: list[str] = [
    "Monthly_Income",
    "Num_Dependents",
    "Loan_Amount",
    "Loan_Tenure",
    "Interest_Rate",
    "Collateral_Value",
    "Outstanding_Loan_Amount",
    "Monthly_EMI",
    "Num_Missed_Payments",
    "Days_Past_Due",
]
RISK_CATEGORICAL: list[str] = ["Employment_Type", "Loan_Type", "Payment_History"]

# How each model input reads to a borrower: its label and how its value is shown ("count",
# "amount" and "rate" rounded, "share" as a percentage, "category" as the value itself).
INPUT_LABELS: dict[str, tuple[str, str]] = {
    "Days_Past_Due": ("Days past due", "count"),
    "Num_Missed_Payments": ("Missed payments", "count"),
    "Monthly_Income": ("Monthly income", "amount"),
    "Outstanding_Loan_Amount": ("Outstanding balance", "amount"),
    "Loan_Amount": ("Loan amount", "amount"),
    "Monthly_EMI": ("Monthly instalment", "amount"),
    "Collateral_Value": ("Collateral value", "amount"),
    "Loan_Tenure": ("Loan tenure (months)", "count"),
    "Interest_Rate": ("Interest rate (%)", "rate"),
    "Num_Dependents": ("Dependents", "count"),
    "emi_to_income": ("Instalment to income", "share"),
    "outstanding_share": ("Share of the loan still owed", "share"),
    "unsecured_share": ("Share of the balance without collateral", "share"),
    "Employment_Type": ("Employment", "category"),
    "Loan_Type": ("Loan type", "category"),
    "Payment_History": ("Payment history", "category"),
}

# Where a score was made without seeing the borrower: out-of-fold (recommended method), the
# held-out test set (notebook method). Only these are evidence of how well scores rank.
HELD_OUT_SOURCES: list[str] = ["out_of_fold", "test"]

STRATEGY_LEGAL = "Immediate legal notices & aggressive recovery attempts"
STRATEGY_SETTLEMENT = "Settlement offers & repayment plans"
STRATEGY_REMINDERS = "Automated reminders & monitoring"
STRATEGIES: list[str] = [STRATEGY_LEGAL, STRATEGY_SETTLEMENT, STRATEGY_REMINDERS]
# Each strategy in a word or two, for a table's headers and rows on an asset page (the full
# text, which the collections team reads in the export, would push the table off the page).
STRATEGY_SHORT: dict[str, str] = {
    STRATEGY_LEGAL: "legal action",
    STRATEGY_SETTLEMENT: "settlement",
    STRATEGY_REMINDERS: "reminders",
}
# Where a borrower's strategy comes from: the risk-score bands, the ranking by expected loss cut
# at the team's capacities, or (when the model fails its gate, whichever of the two
# was asked for) the rules-based policy on arrears.
POLICY_MODEL = "score bands"
POLICY_CAPACITY = "capacity ranking"
POLICY_FALLBACK = "rules-based fallback"
POLICIES: list[str] = [POLICY_MODEL, POLICY_CAPACITY, POLICY_FALLBACK]

# What the capacity policy ranks borrowers by (the first to work first): P(not fully recovered)
# x balance, P(written off) x balance, or the score alone (the bands' order).
RANKING_KEYS: list[str] = ["expected_shortfall", "expected_write_off", "risk_score"]

# Drift (population_stability): the usual reading of a population stability index (PSI, on a
# score) or characteristic stability index (CSI, the same formula on one input): below
# PSI_MODERATE the population is stable, from PSI_MODERATE to PSI_SIGNIFICANT it has moved
# moderately, above PSI_SIGNIFICANT significantly (the population_is_stable check warns).
PSI_MODERATE = 0.10
PSI_SIGNIFICANT = 0.25
PSI_STABLE = "stable"
PSI_MODERATE_SHIFT = "moderate shift"
PSI_SIGNIFICANT_SHIFT = "significant shift"
# Why a comparison has no value: nothing published before this run; this run is the baseline;
# no frozen model to score with (the notebook method's model reads the clustering features, not
# the loan book); the previous run scored with another frozen model (a baseline pinned since).
PSI_NO_PREVIOUS = "no previous run"
PSI_IS_BASELINE = "this run is the baseline"
PSI_NO_FROZEN_MODEL = "no frozen model"
PSI_OTHER_FROZEN_MODEL = "previous run used another frozen model"
PSI_STATUSES: list[str] = [
    PSI_STABLE,
    PSI_MODERATE_SHIFT,
    PSI_SIGNIFICANT_SHIFT,
    PSI_NO_PREVIOUS,
    PSI_IS_BASELINE,
    PSI_NO_FROZEN_MODEL,
    PSI_OTHER_FROZEN_MODEL,
]

# The columns of recovery_strategies the capacity gain curve reads (core.gains): the ranking
# keys, the balance they are caught by, and the strategy (the current worklist sizes).
GAIN_STRATEGY_COLUMNS: list[str] = [
    "Borrower_ID",
    "risk_score",
    "p_written_off",
    "Outstanding_Loan_Amount",
    "expected_shortfall",
    "expected_write_off",
    "recovery_strategy",
]

# Arrears buckets (core.arrears names each loan's; the follow-up generator, the history files and
# the roll rates share them): resolved if Recovery_Status is set, else by Days_Past_Due.
BUCKETS: list[str] = ["current", "1-30", "31-60", "61-90", "90+", "resolved"]
# Days_Past_Due of each open bucket, inclusive. A book may hold more than 180 days (90+), but the
# follow-up draws a new value in 91-180: the generator's range.
BUCKET_DAYS: list[tuple[int, int]] = [(0, 0), (1, 30), (31, 60), (61, 90), (91, 180)]
# the column a history file and the roll-rate inputs name a borrower's bucket by
BUCKET_COLUMN = "arrears_bucket"
# Roll rates between two snapshots (core.roll_rates): a borrower of the earlier snapshot missing
# from the later one moves to LEFT_BOOK; one of the later missing from the earlier comes from
# NEW_TO_BOOK. Counted in the matrix, never dropped.
LEFT_BOOK = "left the book"
NEW_TO_BOOK = "new to the book"
FROM_BUCKETS: list[str] = [*BUCKETS, NEW_TO_BOOK]
TO_BUCKETS: list[str] = [*BUCKETS, LEFT_BOOK]
# Cure rates (core.roll_rates.cure_rates): the groups a delinquent borrower is counted in, by
# what it had at the earlier snapshot; "all" is the whole delinquent book.
CURE_ALL = "all"
CURE_DIMENSIONS: list[str] = [CURE_ALL, BUCKET_COLUMN, "segment_name", "recovery_strategy"]
# The strategy back-test (core.backtest): what its long table groups the resolved borrowers by,
# as at the earlier snapshot: all of a strategy's (crude), the score band, the segment, and the
# score bands holding the reference strategy too, pooled (standardised to the strategy's mix).
BACKTEST_GROUPINGS: list[str] = ["all", "score_band", "segment_name", "band_adjusted"]

# Champion/challenger (core.experiment): the arm a borrower in an experiment is in. A borrower in
# no experiment (none running, or its champion strategy not eligible) has no arm (empty).
ARM_CHAMPION = "champion"
ARM_CHALLENGER = "challenger"
ARMS: list[str] = [ARM_CHAMPION, ARM_CHALLENGER]
# the columns recovery_strategies gains for it, at the end of the table (after the reasons)
EXPERIMENT_COLUMNS: list[str] = ["champion_strategy", "experiment", "experiment_arm"]
