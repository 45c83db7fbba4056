"""KMeans segmentation, and segment names and burden read from the centroids.

KMeans numbers its clusters arbitrarily, so nothing here depends on a cluster id: on a first run
segments are numbered by centroid burden (0 = lowest); on later runs each is matched to the
previous run's nearest centroid and keeps its id. Every segment is named from its centroid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from loan_pipeline.core.compute import parallel_map, single_threaded

# Silhouette is quadratic in rows: above this many it is computed on a fixed-seed sample.
# Rows assigned to segments at a time (the distance matrix is rows x k).
PREDICT_CHUNK = 1_000_000
SILHOUETTE_SAMPLE = 5_000  # silhouette is quadratic: a fixed-seed sample, as in choosing k

# How each feature reads when a segment's centroid is low / high on it.
TRAIT_WORDS: dict[str, tuple[str, str]] = {
    "Age": ("Younger", "Older"),
    "Monthly_Income": ("Low income", "High income"),
    "Num_Dependents": ("Few dependents", "Many dependents"),
    "Loan_Amount": ("Small loan", "High loan"),
    "Loan_Tenure": ("Short tenure", "Long tenure"),
    "Interest_Rate": ("Low rate", "High rate"),
    "Collateral_Value": ("Little collateral", "High collateral"),
    "Outstanding_Loan_Amount": ("Low balance", "High balance"),
    "Monthly_EMI": ("Low EMI", "High EMI"),
    "Num_Missed_Payments": ("Few missed payments", "Many missed payments"),
    "Days_Past_Due": ("Current", "Deep arrears"),
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
    """How k was chosen: one row per candidate k with its scores, and the rule's choice."""

    table: (
        pd.DataFrame
    )  # k, silhouette, davies_bouldin, calinski_harabasz, ari_mean, ari_min, stable, borda
    chosen: int
    sample_size: int
    bootstraps: int
    stability_threshold: float

    @property
    def chosen_row(self) -> pd.Series:
        return self.table.set_index("k").loc[self.chosen]


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
    segment (highest or lowest centroid of all), by |z|; then the others, by |z|. A "High loan"
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


def _evaluate_k(
    X: np.ndarray,
    k_values: list[int],
    sample_size: int = 5_000,
    bootstraps: int = 10,
    random_state: int = 42,
    n_init: int = 4,
    stability_threshold: float = 0.75,
) -> KSelection:
    """Score each candidate k on a fixed-seed sample, and choose one.

    Scores: silhouette (higher is better), Davies-Bouldin (lower), Calinski-Harabasz (higher);
    stability: KMeans refitted on ``bootstraps`` bootstrap resamples, each compared with the fit on
    the whole sample by the adjusted Rand index of their labels on the sample (mean and min).

    The rule: among the stable k (mean ARI >= ``stability_threshold``; all k if none is), take
    the best sum of ranks over the three scores (a Borda count); ties go to the higher silhouette,
    then the smaller k.
    """
    from sklearn.metrics import (
        adjusted_rand_score,
        calinski_harabasz_score,
        davies_bouldin_score,
        pairwise_distances,
        silhouette_score,
    )

    rows = sample_rows(len(X), sample_size, random_state)
    S = X[rows]
    k_values = [k for k in k_values if 2 <= k < len(S)]
    if not k_values:
        raise ValueError(f"no candidate k fits {len(S)} borrowers")
    rng = np.random.default_rng(random_state + 1)
    boot_index = [rng.integers(0, len(S), len(S)) for _ in range(bootstraps)]
    # the sample's distance matrix, computed once for every k's silhouette (it does not depend
    # on k: recomputing it per k was half the cost of choosing k)
    distances = pairwise_distances(S)

    def score(k: int) -> dict:
        labels = _kmeans(k, random_state, n_init).fit_predict(S)
        aris = [
            adjusted_rand_score(labels, _kmeans(k, random_state + b + 1, 1).fit(S[idx]).predict(S))
            for b, idx in enumerate(boot_index)
        ]
        return {
            "k": k,
            "silhouette": float(silhouette_score(distances, labels, metric="precomputed")),
            "davies_bouldin": float(davies_bouldin_score(S, labels)),
            "calinski_harabasz": float(calinski_harabasz_score(S, labels)),
            "ari_mean": float(np.mean(aris)) if aris else float("nan"),
            "ari_min": float(np.min(aris)) if aris else float("nan"),
        }

    # each k is independent (own seeds): scored side by side, one core each
    records = parallel_map(score, k_values)
    table = pd.DataFrame(records)
    table["stable"] = table["ari_mean"].fillna(1.0) >= stability_threshold
    pool = table[table["stable"]] if table["stable"].any() else table
    borda = (
        pool["silhouette"].rank(ascending=False)
        + pool["davies_bouldin"].rank(ascending=True)
        + pool["calinski_harabasz"].rank(ascending=False)
    )
    table["borda"] = borda.reindex(table.index)
    best = pool.assign(borda=borda).sort_values(
        ["borda", "silhouette", "k"], ascending=[True, False, True]
    )
    return KSelection(
        table=table,
        chosen=int(best["k"].iloc[0]),
        sample_size=len(S),
        bootstraps=bootstraps,
        stability_threshold=stability_threshold,
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
    k: int = 4,
    random_state: int = 42,
    n_init: int = 10,
    fit_sample: int | None = None,
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


def evaluate_k(X: np.ndarray, k_values: list[int], **kwargs) -> KSelection:
    with single_threaded():
        return _evaluate_k(X, k_values, **kwargs)


evaluate_k.__doc__ = _evaluate_k.__doc__


def fit_segments(X: np.ndarray, features: list[str], **kwargs) -> SegmentModel:
    with single_threaded():
        return _fit_segments(X, features, **kwargs)


fit_segments.__doc__ = _fit_segments.__doc__


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
    from loan_pipeline.core.frames import text_from_codes

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
    from loan_pipeline.core.frames import join_by_id

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
    from loan_pipeline.core.partitions import combine, per_partition

    rows = per_partition(profile_rows, segments, loans, features)
    return profile_from_sums(*combine(profile_sums, merge_profile_sums, rows, features), features)
