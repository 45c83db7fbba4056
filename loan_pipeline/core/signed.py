"""A logistic regression whose coefficients agree in sign with each input's own relation to the
outcome, and a per-category outcome encoding (weight of evidence) for it.

Why: collinear inputs (log collateral and the Personal-loan flag correlate at -0.99) leave an
unconstrained fit free to give either one any sign, so a reason code could tell a borrower that
more collateral raised their risk. Constraining each coefficient to the sign of its input's
univariate correlation with the outcome (a "monotone" scorecard, as credit scorecards are built)
makes every reason true on its own terms; an input with no clear univariate relation gets a zero
coefficient. The fit is L-BFGS-B with bounds (scipy), on the same penalised log-likelihood as
scikit-learn's ``LogisticRegression`` (L2, ``C``); without bounds the two agree (tested).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

# |correlation| x sqrt(n) above this (about two standard errors) gives an input a direction;
# below it the input's univariate relation is indistinguishable from none and it is left out.
DIRECTION_Z = 2.0


def univariate_directions(X: np.ndarray, y: np.ndarray, z: float = DIRECTION_Z):
    """(direction, correlation) of each column of ``X`` with ``y``: +1 when higher values go
    with the outcome, -1 when with its absence, 0 when the correlation is within ``z``
    standard errors of none (or the column is constant)."""
    X = np.asarray(X, dtype="float64")
    y = np.asarray(y, dtype="float64")
    xc = X - X.mean(axis=0)
    yc = y - y.mean()
    spread = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(spread > 0, (xc * yc[:, None]).sum(axis=0) / spread, 0.0)
    significant = np.abs(r) * np.sqrt(len(y)) > z
    return np.where(significant, np.sign(r), 0.0).astype("int8"), r


class SignConstrainedLogisticRegression(ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression with each coefficient's sign fixed to its input's
    univariate direction (``univariate_directions`` on the training data): +1 -> >= 0,
    -1 -> <= 0, 0 -> exactly 0. ``constrain=False`` fits without bounds (for comparison)."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000, constrain: bool = True):
        self.C = C
        self.max_iter = max_iter
        self.constrain = constrain

    def fit(self, X, y):
        from scipy.optimize import minimize

        X = np.asarray(X, dtype="float64")
        y = np.asarray(y, dtype="float64")
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.directions_, self.univariate_correlation_ = univariate_directions(X, y)
        n = len(y)
        ridge = 1.0 / (self.C * n)

        def loss(theta):
            w, b = theta[:-1], theta[-1]
            z = X @ w + b
            # log(1 + e^z) - y z, stable for large |z|
            value = np.sum(np.logaddexp(0.0, z) - y * z) / n + 0.5 * ridge * (w @ w)
            p = 1.0 / (1.0 + np.exp(-z))
            grad_w = X.T @ (p - y) / n + ridge * w
            return value, np.r_[grad_w, np.sum(p - y) / n]

        if self.constrain:
            bounds = [
                (0.0, None) if d > 0 else (None, 0.0) if d < 0 else (0.0, 0.0)
                for d in self.directions_
            ]
        else:
            bounds = [(None, None)] * X.shape[1]
        bounds.append((None, None))  # the intercept
        rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        start = np.r_[np.zeros(X.shape[1]), np.log(rate / (1 - rate))]
        result = minimize(
            loss,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": self.max_iter, "gtol": 1e-8, "ftol": 1e-12},
        )
        self.coef_ = result.x[:-1].reshape(1, -1)
        self.intercept_ = result.x[-1:]
        self.n_iter_ = np.array([result.nit])
        return self

    def decision_function(self, X):
        return np.asarray(X, dtype="float64") @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X):
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        return (self.decision_function(X) > 0).astype("int64")


class CategoryRisk(TransformerMixin, BaseEstimator):
    """One-hot blocks -> one column per categorical input: the weight of evidence of the
    borrower's category, ln(odds of the outcome in the category / odds in the book), learned
    from the training rows (``pseudo`` borrowers at the book's rate smooth small categories).
    So each categorical input is one number whose higher values mean more risk, with the
    book's own odds at 0: a category raises a borrower's score exactly when its outcome rate
    is above the book's. An input whose categories do not differ (chi-squared test of
    independence, p >= ``alpha``) is all zeros: the encoding is fitted to the outcome, so
    noise would otherwise look like a relation."""

    def __init__(
        self, groups: dict[str, list[int]] | None = None, pseudo: float = 10.0, alpha: float = 0.05
    ):
        self.groups = groups  # input name -> positions of its one-hot columns
        self.pseudo = pseudo
        self.alpha = alpha

    def fit(self, X, y):
        X = np.asarray(X, dtype="float64")
        y = np.asarray(y, dtype="float64")
        rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        book = np.log(rate / (1 - rate))
        from scipy.stats import chi2_contingency

        self.woe_, self.p_value_ = {}, {}
        for name, columns in self.groups.items():
            block = X[:, columns]
            table = np.column_stack([block.T @ y, block.T @ (1 - y)])
            table = table[table.sum(axis=1) > 0]
            p = (
                chi2_contingency(table).pvalue
                if len(table) > 1 and table.sum(axis=0).all()
                else 1.0
            )
            self.p_value_[name] = float(p)
            bad = block.T @ y + self.pseudo * rate
            good = block.T @ (1 - y) + self.pseudo * (1 - rate)
            woe = np.log(bad / good) - book
            self.woe_[name] = woe if p < self.alpha else np.zeros_like(woe)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype="float64")
        return np.column_stack(
            [X[:, columns] @ self.woe_[name] for name, columns in self.groups.items()]
        )

    def get_feature_names_out(self, input_features=None):
        return np.array(list(self.groups), dtype=object)
