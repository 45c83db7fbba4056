"""KMeans segmentation, and segment names and burden read from the centroids.

KMeans numbers its clusters arbitrarily, so nothing here depends on a cluster id: segments are
re-numbered by centroid burden (0 = lowest) and each is named from its centroid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

# Silhouette is quadratic in rows: above this many it is computed on a fixed-seed sample.
SILHOUETTE_SAMPLE = 10_000

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
class SegmentModel:
    """A fitted KMeans with what is needed to apply and explain it."""

    kmeans: object  # sklearn.cluster.KMeans
    features: list[str]
    # KMeans cluster id -> segment id (ordered by burden) and name.
    segment_of_cluster: dict[int, int]
    names: dict[int, str]
    centroids: pd.DataFrame  # standardised, index = segment id
    metrics: dict[str, float] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)


def _words(feature: str) -> tuple[str, str]:
    return TRAIT_WORDS.get(feature, (f"Low {feature}", f"High {feature}"))


def _trait(feature: str, z: float, extreme: bool) -> str:
    low, high = _words(feature)
    word = high if z > 0 else low
    return word if extreme else f"Somewhat {word[0].lower()}{word[1:]}"


def name_segments(centroids: pd.DataFrame) -> dict[int, str]:
    """Name each segment from its two most distinctive standardised traits.

    A segment's candidate traits are ranked: first the features on which it is the most extreme
    segment (highest or lowest centroid of all), by |z|; then the others, by |z|. A "High loan"
    segment therefore always has the highest mean loan amount. Names are made unique by moving
    to the next pair of traits.
    """
    names: dict[int, str] = {}
    taken: set[str] = set()
    for seg, row in centroids.iterrows():
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


def fit_segments(
    X: np.ndarray,
    features: list[str],
    k: int = 4,
    random_state: int = 42,
    n_init: int = 10,
) -> SegmentModel:
    """Fit KMeans on the standardised matrix and describe the segments from the centroids."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if len(X) < k:
        raise ValueError(f"cannot form {k} segments from {len(X)} borrowers")
    km = KMeans(n_clusters=k, random_state=random_state, n_init=n_init).fit(X)
    raw_centroids = pd.DataFrame(km.cluster_centers_, columns=features)
    burden = burden_scores(raw_centroids)
    order = burden.sort_values(kind="stable").index.tolist()  # lowest burden first
    segment_of_cluster = {int(cluster): seg for seg, cluster in enumerate(order)}
    centroids = raw_centroids.loc[order].reset_index(drop=True)
    centroids.index.name = "segment_id"
    labels = np.vectorize(segment_of_cluster.get)(km.labels_)
    sizes = {seg: int((labels == seg).sum()) for seg in range(k)}
    n_sample = min(len(X), SILHOUETTE_SAMPLE)
    silhouette = float(
        silhouette_score(X, km.labels_, sample_size=n_sample, random_state=random_state)
    )
    return SegmentModel(
        kmeans=km,
        features=list(features),
        segment_of_cluster=segment_of_cluster,
        names=name_segments(centroids),
        centroids=centroids,
        metrics={
            "inertia": float(km.inertia_),
            "silhouette": silhouette,
            "silhouette_sample": n_sample,
        },
        sizes=sizes,
    )


def assign_segments(model: SegmentModel, borrower_ids: pd.Series, X: np.ndarray) -> pd.DataFrame:
    """One row per borrower: Borrower_ID, segment_id, segment_name."""
    clusters = model.kmeans.predict(X)
    lookup = np.array([model.segment_of_cluster[c] for c in range(len(model.segment_of_cluster))])
    seg = lookup[clusters]
    names = np.array([model.names[s] for s in range(len(model.names))], dtype=object)
    return pd.DataFrame(
        {
            "Borrower_ID": borrower_ids.to_numpy(),
            "segment_id": seg.astype("int64"),
            "segment_name": names[seg],
        }
    )


def segment_profile(
    loans: pd.DataFrame, segments: pd.DataFrame, features: list[str]
) -> pd.DataFrame:
    """Per segment: name, size and the mean of each feature in its original units."""
    merged = segments[["Borrower_ID", "segment_id", "segment_name"]].merge(
        loans[["Borrower_ID", *features]], on="Borrower_ID", how="left", validate="one_to_one"
    )
    grouped = merged.groupby(["segment_id", "segment_name"], sort=True)
    profile = grouped[features].mean()
    profile.insert(0, "borrowers", grouped.size())
    return profile.reset_index()
