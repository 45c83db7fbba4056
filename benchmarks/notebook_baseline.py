"""The original notebook's method as a plain script: the baseline `make bench` compares against.

Read the CSV, standardise the ten columns, KMeans k=4 (n_init=10), the notebook's fixed names
for cluster ids 0-3 and its high-risk flag, RandomForest(100) on a stratified 80/20 split,
a score for every borrower, the strategy bands, and five seaborn charts (the notebook's four
plus the segments; its histogram draws a kernel density over every point).

    python benchmarks/notebook_baseline.py BOOK.csv OUT_DIR

Prints one JSON line: seconds per stage and the held-out metrics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.metrics import accuracy_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

FEATURES = [
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
NAMES = {
    0: "Moderate Income, High Loan Burden",
    1: "High Income, Low Default Risk",
    2: "Moderate Income, Medium Risk",
    3: "High Loan, Higher Default Risk",
}


def strategy(score: float) -> str:
    if score > 0.75:
        return "Immediate legal notices & aggressive recovery attempts"
    if 0.50 <= score <= 0.75:
        return "Settlement offers & repayment plans"
    return "Automated reminders & monitoring"


def main(book: str, out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {"imports": time.perf_counter() - T0}

    def lap(name: str, started: float) -> float:
        now = time.perf_counter()
        stages[name] = now - started
        return now

    t = time.perf_counter()
    df = pd.read_csv(book)
    t = lap("read_csv", t)
    X = StandardScaler().fit_transform(df[FEATURES])
    df["Borrower_Segment"] = KMeans(n_clusters=4, random_state=42, n_init=10).fit_predict(X)
    df["Segment_Name"] = df["Borrower_Segment"].map(NAMES)
    t = lap("kmeans", t)
    df["High_Risk_Flag"] = df["Segment_Name"].isin([NAMES[3], NAMES[0]]).astype(int)
    X_train, X_test, y_train, y_test = train_test_split(
        df[FEATURES],
        df["High_Risk_Flag"],
        test_size=0.2,
        random_state=42,
        stratify=df["High_Risk_Flag"],
    )
    rf = RandomForestClassifier(n_estimators=100, random_state=42).fit(X_train, y_train)
    proba_test = rf.predict_proba(X_test)[:, 1]
    metrics = {
        "test_accuracy": float(accuracy_score(y_test, proba_test >= 0.5)),
        "test_roc_auc": float(roc_auc_score(y_test, proba_test)),
    }
    df["Risk_Score"] = rf.predict_proba(df[FEATURES])[:, 1]
    t = lap("random_forest", t)
    df["Recovery_Strategy"] = df["Risk_Score"].apply(strategy)
    t = lap("strategies", t)

    charts = [
        lambda ax: sns.histplot(df["Loan_Amount"], kde=True, ax=ax),
        lambda ax: sns.countplot(data=df, x="Payment_History", hue="Recovery_Status", ax=ax),
        lambda ax: sns.boxplot(data=df, x="Recovery_Status", y="Num_Missed_Payments", ax=ax),
        lambda ax: sns.scatterplot(
            data=df, x="Monthly_Income", y="Loan_Amount", hue="Recovery_Status", ax=ax
        ),
        lambda ax: sns.scatterplot(
            data=df, x="Monthly_Income", y="Loan_Amount", hue="Segment_Name", ax=ax
        ),
    ]
    for i, draw in enumerate(charts, start=1):
        fig, ax = plt.subplots(figsize=(10, 6))
        draw(ax)
        fig.savefig(out_dir / f"chart_{i}.png", dpi=100)
        plt.close(fig)
    lap("charts", t)
    stages["total_in_process"] = time.perf_counter() - T0
    print(json.dumps({"stages": stages, "metrics": metrics, "rows": len(df)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
