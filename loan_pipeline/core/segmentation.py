"""KMeans segmentation, and segment names and burden read from the centroids.

KMeans numbers its clusters arbitrarily, so nothing here depends on a cluster id: on a first run
segments are numbered by centroid burden (0 = lowest); on later runs each is matched to the
previous run's nearest centroid and keeps its id. Every segment is named from its centroid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from itertools import combinations

import numpy as np
import pandas as pd

from loan_pipeline.core.runtime import parallel_map, single_threaded
from loan_pipeline.domain import NO_STABLE_SEGMENTATION, STABLE_SEGMENTATION

# Rows assigned to segments at a time (the distance matrix is rows x k).
PREDICT_CHUNK = 1_000_000
SILHOUETTE_SAMPLE = 5_000  # the fitted model's silhouette (quadratic): on a fixed-seed sample
# Choosing k scores the candidate k side by side in threads only from this many sampled rows.
# Below it each KMeans fit on a half of the sample takes a few milliseconds, mostly Python, and
# two threads spend their time waiting for each other's interpreter lock (docs/performance.md).
PARALLEL_SELECTION_ROWS = 5_000
# KMeans restarts of each fit that scores a k (many small fits); the segments' own model has
# ClusterConfig.n_init.
SELECTION_N_INIT = 4

# How each feature reads when a segment's centroid is low / high on it: the two words of a pair
# say the same noun with opposite adjectives ("Small loan" / "Large loan"), so that names side by
# side read as contrasts ("Low balance, small loan" against "High balance, large loan").
TRAIT_WORDS: dict[str, tuple[str, str]] = {
    "Age": ("Younger", "Older"),
    "Monthly_Income": ("Low income", "High income"),
    "Num_Dependents": ("Few dependents", "Many dependents"),
    "Loan_Amount": ("Small loan", "Large loan"),
    "Loan_Tenure": ("Short tenure", "Long tenure"),
    "Interest_Rate": ("Low rate", "High rate"),
    "Collateral_Value": ("Low collateral", "High collateral"),
    "Outstanding_Loan_Amount": ("Low balance", "High balance"),
    "Monthly_EMI": ("Low EMI", "High EMI"),
    "Num_Missed_Payments": ("Few missed payments", "Many missed payments"),
    "Days_Past_Due": ("Few days past due", "Many days past due"),
}

# Burden of a segment: the mean of these standardised centroid coordinates times their sign
# (bigger loans, balances, instalments and arrears raise it; income lowers it).
BURDEN_DIRECTIONS: dict[str, int] = {
    "Loan_Amount": 1,
    "Outstanding_Loan_Amount": 1,
    "Monthly_EMI": 1,
    "Num_Missed_Payments": 1,
    "Days_Past_Due": 1,
    "Monthly_Income": -1,
}


@dataclass
class KSelection:
    """How k was chosen: one row per candidate k with its evidence, and the k used.

    ``table``: k; prediction_strength (mean over the resamples) and prediction_strength_min;
    gap and gap_sd (the gap statistic and its standard error) and gap_gain (gap(k) - gap(k-1)),
    computed at the stable k only; stable (prediction strength >= threshold); gap_significant
    (gap_gain > gap_sd); supported (both). ``chosen`` is the k used: the rule's choice, or the
    configured k (``configured``)."""

    table: pd.DataFrame
    chosen: int
    sample_size: int
    resamples: int
    stability_threshold: float
    references: int = 0
    configured: bool = False

    @property
    def chosen_row(self) -> pd.Series:
        return self.table.set_index("k").loc[self.chosen]

    @property
    def supported(self) -> bool:
        """Whether the data support the k used: its segments are reproducible, and better than
        a structureless book of the same shape would give."""
        return bool(self.chosen_row["supported"])

    @property
    def verdict(self) -> str:
        return STABLE_SEGMENTATION if self.supported else NO_STABLE_SEGMENTATION

    @property
    def summary(self) -> str:
        """One line for a person: the verdict on the k used, and why that k is shown."""
        k = self.chosen
        if self.supported:
            return f"{STABLE_SEGMENTATION}: k={k}" + (" (set in config)" if self.configured else "")
        how = "set in config" if self.configured else "shown"
        return f"{NO_STABLE_SEGMENTATION}: k={k} {how} as a convenient split"


@dataclass
class SegmentModel:
    """A fitted KMeans with what is needed to apply and explain it."""

    kmeans: object  # sklearn.cluster.KMeans
    features: list[str]
    # KMeans cluster id -> segment id, and segment id -> name
    segment_of_cluster: dict[int, int]
    names: dict[int, str]
    centroids: pd.DataFrame  # standardised, index = segment id
    metrics: dict[str, float] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    centroids_original: pd.DataFrame | None = None  # original units, index = segment id
    selection: KSelection | None = None
    matched: dict[int, float] = field(
        default_factory=dict
    )  # segment id -> distance moved since last run
    fit_rows: int = 0

    # The verdict and its one-line summary, read by the charts, the profiles and the command
    # line; None for a model pickled before k selection had a verdict (its selection lacks it).
    @property
    def verdict(self) -> str | None:
        return self.selection.verdict if hasattr(self.selection, "configured") else None

    @property
    def segmentation(self) -> str | None:
        return self.selection.summary if hasattr(self.selection, "configured") else None


def _words(feature: str) -> tuple[str, str]:
    return TRAIT_WORDS.get(feature, (f"Low {feature}", f"High {feature}"))


def _trait(feature: str, z: float, extreme: bool) -> str:
    low, high = _words(feature)
    word = high if z > 0 else low
    return word if extreme else f"Somewhat {word[0].lower()}{word[1:]}"


def name_segments(
    centroids: pd.DataFrame, reserved: dict[int, str] | None = None
) -> dict[int, str]:
    """Name each segment from its two most distinctive standardised traits.

    A segment's candidate traits are ranked: first the features on which it is the most extreme
    segment (highest or lowest centroid of all), by |z|; then the others, by |z|. A "Large loan"
    segment therefore always has the highest mean loan amount. Names are made unique by moving
    to the next pair of traits. Segments in ``reserved`` keep the name given there.
    """
    names: dict[int, str] = dict(reserved or {})
    taken: set[str] = set(names.values())
    for seg, row in centroids.iterrows():
        if int(seg) in names:
            continue
        is_max = centroids.max(axis=0).eq(row)
        is_min = centroids.min(axis=0).eq(row)
        ranked = sorted(
            row.index,
            key=lambda f: (
                not ((row[f] > 0 and is_max[f]) or (row[f] < 0 and is_min[f])),
                -abs(row[f]),
            ),
        )
        traits = [
            _trait(f, row[f], bool((row[f] > 0 and is_max[f]) or (row[f] < 0 and is_min[f])))
            for f in ranked
        ]
        chosen = None
        for a, b in combinations(range(len(traits)), 2):
            candidate = f"{traits[a]}, {traits[b][0].lower()}{traits[b][1:]}"
            if candidate not in taken:
                chosen = candidate
                break
        if chosen is None:  # a single feature, or every pair taken
            chosen = f"{traits[0]} (segment {seg})"
        taken.add(chosen)
        names[int(seg)] = chosen
    return names


def burden_scores(centroids: pd.DataFrame) -> pd.Series:
    """Centroid burden (see ``BURDEN_DIRECTIONS``); zero if no burden feature is clustered on."""
    present = [f for f in BURDEN_DIRECTIONS if f in centroids.columns]
    if not present:
        return pd.Series(0.0, index=centroids.index)
    signs = pd.Series({f: BURDEN_DIRECTIONS[f] for f in present})
    return (centroids[present] * signs).mean(axis=1)


def _kmeans(k: int, random_state: int, n_init: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=random_state, n_init=n_init)


def sample_rows(n: int, size: int | None, random_state: int) -> np.ndarray:
    """Row positions of a fixed-seed uniform sample without replacement (all rows if small)."""
    if size is None or n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, size=size, replace=False))


def pca_box_reference(S: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A structureless book of the sample's shape: uniform over the box aligned with the
    sample's principal axes (Tibshirani, Walther & Hastie 2001, reference (b)). Aligning the box
    with the principal axes keeps correlated columns (loan amount, balance, instalment) from
    looking like structure: a cut along their common axis gains as much on the reference."""
    centre = S.mean(axis=0)
    _, _, axes = np.linalg.svd(S - centre, full_matrices=False)
    projected = (S - centre) @ axes.T
    drawn = rng.uniform(projected.min(axis=0), projected.max(axis=0), size=projected.shape)
    return drawn @ axes + centre


def _log_within(S: np.ndarray, k: int, random_state: int, n_init: int) -> float:
    """log W_k: the log of the within-cluster sum of squares of KMeans with k clusters."""
    if k == 1:
        return float(np.log(((S - S.mean(axis=0)) ** 2).sum()))
    return float(np.log(_kmeans(k, random_state, n_init).fit(S).inertia_))


def prediction_strength(
    S: np.ndarray,
    k: int,
    halvings: list[tuple[np.ndarray, np.ndarray]],
    random_state: int,
    n_init: int,
) -> list[float]:
    """Prediction strength of k clusters (Tibshirani & Walther 2005), once per direction of each
    halving: cluster both halves; for each cluster of the test half, the share of its pairs of
    borrowers that the training half's centroids also put together; the smallest share.

    The smallest, not an average over borrowers: when k splits one real group in two, the
    other groups are still found and an average (the adjusted Rand index of the earlier rule)
    stays high, while the split group's share of agreeing pairs falls to about a half."""
    strengths = []
    for h, (a, b) in enumerate(halvings):
        fits = [
            _kmeans(k, random_state + 2 * h + i, n_init).fit(S[half])
            for i, half in enumerate((a, b))
        ]
        for test, train, half in ((fits[0], fits[1], a), (fits[1], fits[0], b)):
            together = np.zeros((k, k))
            np.add.at(together, (test.labels_, train.predict(S[half])), 1)
            sizes = together.sum(axis=1)
            counted = sizes >= 2  # a one-borrower cluster has no pairs
            agree = (together * (together - 1)).sum(axis=1)[counted]
            strengths.append(float(np.min(agree / (sizes[counted] * (sizes[counted] - 1)))))
    return strengths


def _in_turn(func, items) -> list:
    return [func(item) for item in items]


def _evaluate_k(
    X: np.ndarray,
    k_values: list[int],
    *,
    selection_sample: int,
    resamples: int,
    references: int,
    random_state: int,
    stability_threshold: float,
    fixed_k: int | None = None,
) -> KSelection:
    """Score each candidate k on a fixed-seed sample, and choose one.

    Two questions per k, both against what chance alone would give:

    - is it reproducible? Prediction strength (``prediction_strength``) over ``resamples``
      random halvings of the sample, each used both ways; stable when the mean is at least
      ``stability_threshold`` (``ClusterConfig``'s; Tibshirani & Walther suggest 0.8 to 0.9);
    - is it more than a structureless book of the same shape would give? The gap statistic:
      gap(k) = mean over ``references`` reference books (``pca_box_reference``) of log W_k,
      minus the sample's log W_k; k is a significant step when gap(k) - gap(k-1) exceeds gap's
      standard error s_k = sd * sqrt(1 + 1/references) (Tibshirani et al.'s criterion).

    The rule: the LARGEST k that is both (its segments are real and none of them is an
    arbitrary cut of a larger group, which would fail prediction strength). When none is,
    the segmentation is not stable, and the k with the highest prediction strength (ties: the
    smaller) is shown as a convenient split: the partition that refits agree on most, so ids
    and names move least between runs.

    Why not the silhouette, Davies-Bouldin and Calinski-Harabasz of the earlier rule: they
    average over every input, so groups that live in a few of the inputs are diluted by the
    others (three groups in three of nine inputs scored best at k=2).

    ``fixed_k`` (configured): that k is used whatever the rule says; it is scored all the same,
    so the verdict says whether the data support it.
    """
    rows = sample_rows(len(X), selection_sample, random_state)
    S = X[rows]
    half = len(S) // 2
    # prediction strength clusters each half of the sample: a half needs more than k borrowers,
    # so that some segment of it has a pair to count
    candidates = set(k_values) | ({fixed_k} if fixed_k is not None else set())
    k_values = sorted(k for k in candidates if 2 <= k < half)
    if fixed_k is not None and fixed_k not in k_values:
        raise ValueError(f"cannot judge k={fixed_k} on {len(S)} borrowers (halves of {half})")
    if not k_values:
        raise ValueError(f"no candidate k fits {len(S)} borrowers (halves of {half})")
    if resamples < 1 or references < 2:
        raise ValueError("choosing k needs at least one resample and two reference books")
    rng = np.random.default_rng(random_state + 1)
    halvings = []
    for _ in range(resamples):
        order = rng.permutation(len(S))
        halvings.append((order[:half], order[half : 2 * half]))
    reference_rng = np.random.default_rng(random_state + 2)
    reference_books = [pca_box_reference(S, reference_rng) for _ in range(references)]

    def strength(k: int) -> dict:
        values = prediction_strength(S, k, halvings, random_state, SELECTION_N_INIT)
        return {
            "k": k,
            "prediction_strength": float(np.mean(values)),
            "prediction_strength_min": float(np.min(values)),
        }

    def gap(k: int) -> dict:
        logw = _log_within(S, k, random_state, SELECTION_N_INIT)
        logw_ref = np.array(
            [
                _log_within(R, k, random_state + b + 1, SELECTION_N_INIT)
                for b, R in enumerate(reference_books)
            ]
        )
        return {
            "k": k,
            "gap": float(logw_ref.mean() - logw),
            "gap_sd": float(logw_ref.std() * np.sqrt(1 + 1 / references)),
        }

    # Each k is independent (own seeds), so the k are scored side by side, one core each, the
    # largest (slowest) first; the answer does not depend on the order or the number of threads.
    # The gap is computed only where the rule reads it, at a stable k and the k below it: on a
    # book with no stable k (most real books) that saves its 11 fits per k.
    spread = parallel_map if len(S) >= PARALLEL_SELECTION_ROWS else _in_turn
    table = pd.DataFrame(spread(strength, k_values[::-1])).sort_values("k")
    table["stable"] = table["prediction_strength"] >= stability_threshold
    stable_k = table.loc[table["stable"], "k"].tolist()
    needed = sorted(set(stable_k) | {k - 1 for k in stable_k}, reverse=True)
    gaps = pd.DataFrame(spread(gap, needed), columns=["k", "gap", "gap_sd"]).set_index("k")
    table = table.join(gaps, on="k")
    table["gap_gain"] = table["gap"] - table["k"].sub(1).map(gaps["gap"])
    table["gap_significant"] = table["gap_gain"] > table["gap_sd"]  # False where not computed
    table["supported"] = table["stable"] & table["gap_significant"]
    table = table[
        [
            "k",
            "prediction_strength",
            "prediction_strength_min",
            "gap",
            "gap_sd",
            "gap_gain",
            "stable",
            "gap_significant",
            "supported",
        ]
    ].reset_index(drop=True)
    if fixed_k is not None:
        chosen = fixed_k
    elif table["supported"].any():
        chosen = int(table.loc[table["supported"], "k"].max())
    else:
        ranked = table.sort_values(["prediction_strength", "k"], ascending=[False, True])
        chosen = int(ranked["k"].iloc[0])
    return KSelection(
        table=table,
        chosen=chosen,
        sample_size=len(S),
        resamples=resamples,
        stability_threshold=stability_threshold,
        references=references,
        configured=fixed_k is not None,
    )


def match_segments(
    centroids: pd.DataFrame, previous: pd.DataFrame, scales: pd.Series
) -> dict[int, tuple[int, float]]:
    """Pair new centroids with last run's (both in original units), minimising the total distance
    in current standard deviations. Returns new row -> (previous segment id, distance)."""
    from scipy.optimize import linear_sum_assignment

    common = [c for c in centroids.columns if c in previous.columns]
    a = centroids[common].to_numpy() / scales[common].to_numpy()
    b = previous[common].to_numpy() / scales[common].to_numpy()
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    rows, cols = linear_sum_assignment(cost)
    return {
        int(r): (int(previous.index[c]), float(cost[r, c])) for r, c in zip(rows, cols, strict=True)
    }


def _fit_segments(
    X: np.ndarray,
    features: list[str],
    *,
    k: int,
    random_state: int,
    n_init: int,
    fit_sample: int | None,
    means: list[float] | None = None,
    scales: list[float] | None = None,
    previous: SegmentModel | None = None,
    keep_name_within: float = 0.5,
    selection: KSelection | None = None,
    count_clusters: Callable[[object], np.ndarray] | None = None,
) -> SegmentModel:
    """Fit KMeans on the standardised matrix (on a fixed-seed sample of ``fit_sample`` rows when
    the book is larger) and describe the segments from the centroids.

    Segment ids: without a ``previous`` model, the clusters ordered by centroid burden (0 =
    lowest). With one (same features), each new centroid is matched to last run's nearest
    (Hungarian assignment on distance in standard deviations) and takes its id, and its name too
    if it moved less than ``keep_name_within``; unmatched segments take the next free ids.

    ``count_clusters(kmeans)``: borrowers per cluster over the whole book, when ``X`` is only
    the fitting sample of a book in partitions (default: every row of ``X``).
    """
    from sklearn.metrics import silhouette_score

    if len(X) < k:
        raise ValueError(f"cannot form {k} segments from {len(X)} borrowers")
    rows = sample_rows(len(X), fit_sample, random_state)
    km = _kmeans(k, random_state, n_init).fit(X[rows])
    raw_centroids = pd.DataFrame(km.cluster_centers_, columns=features)
    mean_s = pd.Series(means if means is not None else [0.0] * len(features), index=features)
    scale_s = pd.Series(scales if scales is not None else [1.0] * len(features), index=features)
    original = raw_centroids * scale_s + mean_s
    burden = burden_scores(raw_centroids)
    by_burden = burden.sort_values(kind="stable").index.tolist()  # lowest burden first

    matched: dict[int, float] = {}
    reserved: dict[int, str] = {}
    usable_previous = (
        previous is not None
        and previous.centroids_original is not None
        and list(previous.features) == list(features)
    )
    if usable_previous:
        pairs = match_segments(original, previous.centroids_original, scale_s)
        segment_of_cluster = {c: pairs[c][0] for c in pairs}
        free = [s for s in range(k + len(previous.names)) if s not in segment_of_cluster.values()]
        for cluster in by_burden:
            if cluster not in segment_of_cluster:
                segment_of_cluster[cluster] = free.pop(0)
        for seg, distance in pairs.values():
            matched[seg] = distance
            if distance <= keep_name_within:
                reserved[seg] = previous.names[seg]
    else:
        segment_of_cluster = {int(cluster): seg for seg, cluster in enumerate(by_burden)}
    segment_of_cluster = {int(c): int(s) for c, s in segment_of_cluster.items()}
    order = sorted(segment_of_cluster, key=segment_of_cluster.get)
    centroids = raw_centroids.loc[order].set_axis([segment_of_cluster[c] for c in order])
    centroids.index.name = "segment_id"
    centroids_original = original.loc[order].set_axis(centroids.index)
    segment_of = np.array([segment_of_cluster[c] for c in range(k)], dtype="int64")
    counts = cluster_counts(X, km) if count_clusters is None else count_clusters(km)
    sizes = {int(segment_of[c]): int(counts[c]) for c in range(k)}
    n_sample = min(len(rows), SILHOUETTE_SAMPLE)
    silhouette = float(
        silhouette_score(X[rows], km.labels_, sample_size=n_sample, random_state=random_state)
    )
    return SegmentModel(
        kmeans=km,
        features=list(features),
        segment_of_cluster=segment_of_cluster,
        names=name_segments(centroids, reserved=reserved),
        centroids=centroids,
        metrics={
            "inertia": float(km.inertia_),
            "silhouette": silhouette,
            "silhouette_sample": n_sample,
        },
        sizes=sizes,
        centroids_original=centroids_original,
        selection=selection,
        matched=matched,
        fit_rows=len(rows),
    )


def cluster_counts(X: np.ndarray, kmeans) -> np.ndarray:
    """Rows of ``X`` per KMeans cluster (every borrower, a chunk at a time)."""
    k = kmeans.n_clusters
    counts = np.zeros(k, dtype="int64")
    for start in range(0, len(X), PREDICT_CHUNK):
        counts += np.bincount(kmeans.predict(X[start : start + PREDICT_CHUNK]), minlength=k)
    return counts


def partition_cluster_counts(scaled: pd.DataFrame, kmeans) -> np.ndarray:
    """``cluster_counts`` of a scaled-features frame, or one partition of it."""
    from loan_pipeline.core.features import feature_matrix

    with single_threaded():
        return cluster_counts(feature_matrix(scaled), kmeans)


# (``wraps`` for the docstring and the signature, which ``inspect.signature`` reads through)
@wraps(_evaluate_k, assigned=("__doc__",))
def evaluate_k(X: np.ndarray, k_values: list[int], **settings) -> KSelection:
    with single_threaded():
        return _evaluate_k(X, k_values, **settings)


@wraps(_fit_segments, assigned=("__doc__",))
def fit_segments(X: np.ndarray, features: list[str], **settings) -> SegmentModel:
    with single_threaded():
        return _fit_segments(X, features, **settings)


def assign_segments(model: SegmentModel, borrower_ids: pd.Series, X: np.ndarray) -> pd.DataFrame:
    """One row per borrower: Borrower_ID, segment_id, segment_name."""
    with single_threaded():
        clusters = (
            np.concatenate(
                [
                    model.kmeans.predict(X[start : start + PREDICT_CHUNK])
                    for start in range(0, len(X), PREDICT_CHUNK)
                ]
            )
            if len(X)
            else np.zeros(0, dtype="int64")  # an empty partition (or a Dask frame's meta)
        )
    lookup = np.array([model.segment_of_cluster[c] for c in range(len(model.segment_of_cluster))])
    seg = lookup[clusters]
    from loan_pipeline.core.joins import text_from_codes

    names = [model.names.get(s) for s in range(max(model.names) + 1)]
    return pd.DataFrame(
        {
            "Borrower_ID": borrower_ids.array,
            "segment_id": seg.astype("int64"),
            "segment_name": text_from_codes(names, seg),
        }
    )


def segments_of(scaled: pd.DataFrame, model: SegmentModel) -> pd.DataFrame:
    """``assign_segments`` on a scaled-features frame, or one partition of it."""
    from loan_pipeline.core.features import feature_matrix

    return assign_segments(model, scaled["Borrower_ID"], feature_matrix(scaled))


OUTCOME_SHARES = {
    "Fully Recovered": "share_fully_recovered",
    "Partially Recovered": "share_partially_recovered",
    "Written Off": "share_written_off",
}


SEGMENT_KEYS = ["segment_id", "segment_name"]


def profile_rows(segments: pd.DataFrame, loans: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The columns a segment profile reads, one row per borrower of ``segments`` (a table, or
    one partition of it with the loan book's partition that holds the same borrowers)."""
    from loan_pipeline.core.joins import join_by_id

    columns = ["Borrower_ID", *features]
    if "Recovery_Status" in loans.columns:
        columns.append("Recovery_Status")
    return join_by_id(segments[["Borrower_ID", *SEGMENT_KEYS]], loans[columns])


def profile_sums(rows: pd.DataFrame, features: list[str]):
    """What a segment profile is computed from, for ``profile_rows`` (a table or one partition):
    per segment, its borrowers, each feature's sum and number of values, its open loans; per
    segment and outcome, the resolved loans (None without outcomes); and the number of rows.
    Added up over partitions (``merge_profile_sums``), they are those of the whole book."""
    grouped = rows.groupby(SEGMENT_KEYS, sort=True)
    sums = {"borrowers": grouped.size()}
    sums |= {f"sum of {f}": s for f, s in grouped[features].sum().items()}
    sums |= {f"values of {f}": s for f, s in grouped[features].count().items()}
    outcomes = None
    if "Recovery_Status" in rows.columns:
        status = rows["Recovery_Status"]
        sums["open_loans"] = status.isna().groupby([rows[k] for k in SEGMENT_KEYS]).sum()
        outcomes = rows[status.notna()].groupby([*SEGMENT_KEYS, "Recovery_Status"]).size()
    return pd.DataFrame(sums), outcomes, len(rows)


def merge_profile_sums(parts: list) -> tuple:
    from loan_pipeline.core.summaries import sum_frames

    outcomes = [o for _, o, _ in parts if o is not None]
    return (
        sum_frames([s for s, _, _ in parts]),
        sum_frames(outcomes) if outcomes else None,
        sum(n for _, _, n in parts),
    )


def profile_from_sums(sums: pd.DataFrame, outcomes: pd.Series | None, rows: int, features):
    """The segment profile (``segment_profile``) from the whole book's ``profile_sums``."""
    sums = sums.sort_index()
    profile = pd.DataFrame(
        {f: sums[f"sum of {f}"] / sums[f"values of {f}"] for f in features}, index=sums.index
    )
    profile.insert(0, "borrowers", sums["borrowers"])
    profile.insert(1, "share_of_book", profile["borrowers"] / rows)
    if outcomes is not None:
        profile["open_loans"] = sums["open_loans"]
        counts = (
            outcomes.unstack("Recovery_Status", fill_value=0)
            if len(outcomes)
            else pd.DataFrame(index=profile.index)
        )
        mix = counts.div(counts.sum(axis=1), axis=0)
        for status_value, column in OUTCOME_SHARES.items():
            profile[column] = mix[status_value] if status_value in mix.columns else 0.0
    return profile.reset_index()


def segment_profile(loans, segments, features: list[str]) -> pd.DataFrame:
    """Per segment: name, size, share of the book, the mean of each feature in its original
    units, and the observed outcome mix among its resolved loans (open loans counted apart).

    Computed from per-segment counts and sums (``profile_sums``), a partition at a time when
    the tables are Dask frames (partitioned alike) and added up: only the sums come back."""
    from loan_pipeline.core.partitions import per_partition, summarise

    rows = per_partition(profile_rows, segments, loans, features)
    return profile_from_sums(*summarise(profile_sums, merge_profile_sums, rows, features), features)


# What a profile's numbers mean, and so how many decimals they are shown with: money to the
# cent, the interest rate (% a year) to 0.01 point, counts, ages and months to a tenth, shares to
# a tenth of a percent. A feature of no known kind keeps 3.
MONEY_DECIMALS, PERCENT_DECIMALS, COUNT_DECIMALS, SHARE_DECIMALS = 2, 2, 1, 3


def rounded_profile(profile: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """``segment_profile`` rounded for the people who read it (the published table): each mean
    to what its feature is, each share to 3 decimals; counts stay whole."""
    from loan_pipeline.schemas import INT_COLUMNS, MONEY_COLUMNS, PERCENT_COLUMNS

    def decimals(feature: str) -> int:
        if feature in MONEY_COLUMNS:
            return MONEY_DECIMALS
        if feature in PERCENT_COLUMNS:
            return PERCENT_DECIMALS
        return COUNT_DECIMALS if feature in INT_COLUMNS else SHARE_DECIMALS

    places = {f: decimals(f) for f in features}
    places |= {c: SHARE_DECIMALS for c in ["share_of_book", *OUTCOME_SHARES.values()]}
    return profile.round({c: d for c, d in places.items() if c in profile.columns})
