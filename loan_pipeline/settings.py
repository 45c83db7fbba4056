"""Paths, environment and run configuration: the one place the pipeline's settings are read.

Environment variables (all optional):

- ``LOAN_BOOK_CSV``: the loan book to read (default ``data/loan_book_sample.csv``).
- ``LOAN_PIPELINE_STORAGE``: where outputs go (default ``storage/`` in the project).
- ``DAGSTER_HOME``: Dagster's own state; the Makefile points it at ``.dagster_home/``.
- ``DASK_SCHEDULER_ADDRESS``: a Dask scheduler (``tcp://host:8786``). Set, the heavy steps run
  on that cluster and keep their tables as Parquet datasets under ``LOAN_PIPELINE_DATASETS``;
  unset, everything runs in this process as before.
- ``LOAN_PIPELINE_DATASETS``: where the tables live when not in the storage folder: any fsspec
  URL the workers can reach (``s3://bucket/loans``, a shared folder).
- ``LOAN_PIPELINE_KEEP_DAYS``: how long superseded snapshots and failed runs' versions are kept
  (default 7).
- ``LOAN_PIPELINE_RESULTS``: where results are kept by the digest of their inputs to be used
  again when a run has the same inputs, code and libraries (the charts' PNGs; default
  ``results/`` in the storage folder; ``off``: always computed).
- ``LOAN_PIPELINE_RUN_CONFIG``: a run config file (YAML, ``ops:`` and ``resources:``, as
  ``python -m loan_pipeline run --config`` takes) that the runs of the daily schedule and the
  incoming-file sensor carry, e.g. a champion/challenger experiment on every snapshot.

Everything a user may change per run is a Dagster ``Config`` class below, so it shows, typed and
validated, in the launchpad.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from dagster import Config, ConfigurableResource
from pydantic import Field, field_validator

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The project checkout (editable install), else the current directory."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


DEFAULT_CSV = project_root() / "data" / "loan_book_sample.csv"

# Dagster concurrency pool of the heavy steps (ingest, features, model fits, scoring, strategies,
# monitoring, charts). An instance's `concurrency: pools:` config caps how many of them run at once
# across all runs (docs/deploy/dagster.yaml); without a limit (the default SQLite instance) the
# pool changes nothing.
HEAVY_POOL = "loan_pipeline_heavy"


# The Dagster instance `make setup` and the CLI make in DAGSTER_HOME: SQLite, no telemetry, and
# one run at a time from the run queue (the UI, the schedule and the sensors), since the
# storage has one writer; a CLI run waits for the writer lock instead.
INSTANCE_YAML = """telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 1
"""


def source_csv(configured: str | None = None) -> Path:
    """The loan book to read: launchpad config, else ``LOAN_BOOK_CSV``, else the shipped sample."""
    chosen = configured or os.environ.get("LOAN_BOOK_CSV") or str(DEFAULT_CSV)
    return Path(chosen).expanduser()


def source_location(configured: str | None = None) -> str | Path:
    """``source_csv``, except that an fsspec URL (``s3://bucket/book.csv``) stays a URL: what the
    workers of a Dask cluster read the book from."""
    chosen = configured or os.environ.get("LOAN_BOOK_CSV") or ""
    return chosen if "://" in chosen else source_csv(configured)


def storage_dir() -> Path:
    """Root of every pipeline output: each run's folder, the published snapshot, its catalog."""
    chosen = os.environ.get("LOAN_PIPELINE_STORAGE")
    return Path(chosen).expanduser() if chosen else project_root() / "storage"


def incoming_dir() -> Path:
    """Where new loan-book snapshots are dropped (watched by the incoming_loan_files sensor)."""
    chosen = os.environ.get("LOAN_PIPELINE_INCOMING")
    return Path(chosen).expanduser() if chosen else project_root() / "data" / "incoming"


def processed_dir() -> Path:
    """Where a dropped file goes once its run has succeeded."""
    chosen = os.environ.get("LOAN_PIPELINE_PROCESSED")
    return Path(chosen).expanduser() if chosen else project_root() / "data" / "processed"


def schedule_timezone() -> str:
    """Timezone of the daily schedule (IANA name)."""
    return os.environ.get("LOAN_PIPELINE_TIMEZONE", "UTC")


def lock_wait_seconds() -> float | None:
    """How long a run waits for the writer lock (``LOAN_PIPELINE_LOCK_WAIT_S``; default: as long
    as it takes, since the run queue or the CLI has already waited its turn)."""
    chosen = os.environ.get("LOAN_PIPELINE_LOCK_WAIT_S", "").strip()
    return float(chosen) if chosen else None


def sensor_interval_seconds() -> int:
    """How often the sensors look for new files, finished runs and changed inputs
    (``LOAN_PIPELINE_SENSOR_INTERVAL``, seconds, default 30; read when the code location loads)."""
    return int(os.environ.get("LOAN_PIPELINE_SENSOR_INTERVAL", "30"))


def frame_cache_bytes() -> int:
    """How much memory the in-process hand-off of outputs between steps may hold at most
    (``LOAN_PIPELINE_FRAME_CACHE_MB``, default 5120; 0 turns it off)."""
    return int(float(os.environ.get("LOAN_PIPELINE_FRAME_CACHE_MB", "5120")) * 2**20)


def dask_scheduler_address() -> str | None:
    """The Dask scheduler the heavy steps run on (``DASK_SCHEDULER_ADDRESS``), or None: local."""
    return os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip() or None


def datasets_url() -> str | None:
    """Where the tables are written, when not in the storage folder: an fsspec URL or a folder
    every Dask worker can reach (``LOAN_PIPELINE_DATASETS``); None: the storage folder."""
    chosen = os.environ.get("LOAN_PIPELINE_DATASETS", "").strip()
    return chosen.rstrip("/") if chosen else None


def results_dir() -> Path | None:
    """Where results are kept by digest (``LOAN_PIPELINE_RESULTS``; default ``results/`` in the
    storage folder), or None (``off``): every result computed."""
    chosen = os.environ.get("LOAN_PIPELINE_RESULTS", "").strip()
    if chosen.lower() == "off":
        return None
    return Path(chosen).expanduser() if chosen else storage_dir() / "results"


def keep_days() -> float:
    """How long superseded snapshots (time travel) and failed runs' versions (re-execution) are
    kept (``LOAN_PIPELINE_KEEP_DAYS``, default 7); the two newest snapshots are always kept."""
    return float(os.environ.get("LOAN_PIPELINE_KEEP_DAYS", "7"))


# Tables that, on a Dask cluster, are partitioned Parquet datasets (one row per borrower: their
# size is the book's). The other tables are small summaries, written by the Dagster process.
PARTITIONED_TABLES: frozenset[str] = frozenset(
    {
        "raw_loans",
        "validated_loans",
        "scaled_features",
        "borrower_segments",
        "risk_scores",
        "recovery_strategies",
    }
)


def run_config_file() -> Path | None:
    """The run config file the schedule's and the incoming-file sensor's runs carry
    (``LOAN_PIPELINE_RUN_CONFIG``), or None: their runs use the defaults."""
    chosen = os.environ.get("LOAN_PIPELINE_RUN_CONFIG", "").strip()
    return Path(chosen).expanduser() if chosen else None


class RunConfigFileError(ValueError):
    """A run config file that cannot be used; the message names the file and why."""


def read_run_config_file(path: str | os.PathLike[str]) -> dict:
    """The run config in ``path``: YAML holding ``ops:`` and ``resources:`` (either may be left
    out), as the launchpad takes them. Only its shape is checked here; what the ops and
    resources accept is checked against the job that runs it."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise RunConfigFileError(f"the run config {path} cannot be read: {err}") from err
    unknown = sorted(set(config) - {"ops", "resources"}) if isinstance(config, dict) else None
    if unknown is None or unknown:
        raise RunConfigFileError(
            f"the run config {path} must be a mapping of ops: and resources:"
            + (f", not {', '.join(map(str, unknown))}" if unknown else "")
        )
    return config


def charts_dir() -> Path:
    return storage_dir() / "charts"


def exports_dir() -> Path:
    return storage_dir() / "exports"


# --- run configuration (launchpad) ---------------------------------------------------------


class IngestConfig(Config):
    """Where the loan book comes from, and how much bad input a run tolerates."""

    csv_path: str | None = Field(
        default=None,
        description="Path of the loan-book CSV. Empty: $LOAN_BOOK_CSV, else data/loan_book_sample.csv.",
    )
    max_quarantine_share: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Largest share of rows that may be quarantined; above it the run stops.",
    )
    max_file_gb: float | None = Field(
        default=None,
        gt=0,
        description="Refuse files larger than this before reading them. Empty: a sixth of this "
        "machine's memory (a CSV takes several times its size in memory once parsed); on a Dask "
        "cluster, where no process reads the file whole, no limit.",
    )
    min_rows: int = Field(
        default=20, ge=1, description="Fewest valid rows a book needs to be segmented and scored."
    )

    def max_file_bytes(self, on_cluster: bool = False) -> int | None:
        """The largest file read: ``max_file_gb`` when set; else a sixth of this machine's memory
        for a whole read, and no limit for a read in blocks on a cluster (each worker holds a
        block at a time, and the Dagster process only counts)."""
        if self.max_file_gb is not None:
            return int(self.max_file_gb * 1e9)
        return None if on_cluster else default_max_file_bytes()


def default_max_file_bytes() -> int:
    """A sixth of physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    return total // 6


class AnalysisMethod(ConfigurableResource):
    """Which analysis the graph runs: the recommended one, or the original notebook's for
    comparison. Set once for the whole run (launchpad: resources.analysis.config.method)."""

    method: Literal["recommended", "notebook"] = Field(
        default="recommended",
        description="'recommended': k chosen from the data, segments matched to the last run, "
        "an outcome model with out-of-fold scores. 'notebook': the original method "
        "(ten columns with Age, k=4, RandomForest predicting the high-burden segments).",
    )

    @property
    def is_notebook(self) -> bool:
        return self.method == "notebook"


class DaskClusterResource(ConfigurableResource):
    """The Dask cluster the heavy, per-borrower steps run on. Its scheduler is
    ``DASK_SCHEDULER_ADDRESS``; with none, every step runs in this process exactly as without
    Dask. On a cluster, those steps read and write partitioned Parquet under
    ``LOAN_PIPELINE_DATASETS`` and apply the same pandas functions to each partition."""

    block_mb: float = Field(
        default=64,
        gt=0,
        description="On a cluster: the loan-book CSV is read in blocks of about this many "
        "megabytes, one task (and one partition of the tables) per block.",
    )

    @property
    def address(self) -> str | None:
        return dask_scheduler_address()

    @property
    def enabled(self) -> bool:
        return self.address is not None


class FeatureConfig(Config):
    """Which columns are standardised into the clustering feature matrix."""

    columns: list[str] | None = Field(
        default=None,
        description="Numeric loan-book columns to standardise. Empty: the notebook's nine "
        "without Age (recommended method) or its ten (notebook method).",
    )


class ClusterConfig(Config):
    """KMeans settings for the borrower segmentation."""

    k: int | None = Field(
        default=None,
        ge=2,
        le=20,
        description="Number of segments. Empty: chosen from the data (recommended) or 4 (notebook).",
    )
    k_min: int = Field(default=2, ge=2, description="Smallest k tried when choosing k.")
    k_max: int = Field(default=8, ge=2, le=20, description="Largest k tried when choosing k.")
    resamples: int = Field(
        default=5,
        ge=1,
        description="Random halvings of the selection sample per k (each used both ways) for "
        "its prediction strength.",
    )
    references: int = Field(
        default=10,
        ge=2,
        description="Structureless reference books for the gap statistic of a stable k.",
    )
    stability_threshold: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="Mean prediction strength from which a k is stable (reproducible).",
    )
    selection_sample: int = Field(
        default=5_000, ge=100, description="Rows (fixed-seed sample) used to score each k."
    )
    fit_sample: int = Field(
        default=200_000, ge=100, description="Most rows KMeans is fitted on; every row is assigned."
    )
    random_state: int = Field(default=42, description="Seed for KMeans initialisation and samples.")
    n_init: int = Field(default=10, ge=1, description="KMeans restarts; the best inertia wins.")


class RiskConfig(Config):
    """How the risk model is fitted (the method itself is the `analysis` resource)."""

    folds: int = Field(default=5, ge=2, le=20, description="Cross-validation folds (recommended).")
    max_train_rows: int = Field(
        default=50_000, ge=1_000, description="Most rows a model is fitted on (fixed-seed sample)."
    )
    min_skill: float = Field(
        default=0.01,
        description="Brier skill over the base rate the model needs before strategies use it.",
    )
    random_state: int = Field(default=42, description="Seed for folds, samples and the forest.")
    sign_constraints: bool = Field(
        default=True,
        description="Fix each coefficient's sign to its input's own relation to the outcome, so "
        "every reason code points the way the data do. Off: the coefficient-sign check shows "
        "where an unconstrained fit contradicts the data (and the strategies then fall back).",
    )
    n_estimators: int = Field(
        default=100, ge=1, description="Notebook method: trees in the forest."
    )
    test_size: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Notebook method: held-out share."
    )
    high_risk_segments: int = Field(
        default=2,
        ge=1,
        description="Notebook method: how many highest-burden segments are high risk.",
    )


# Strategies by their short names (domain.STRATEGY_SHORT; settings imports nothing of the
# project's, a test keeps the two equal): what an experiment's launchpad fields accept.
StrategyShort = Literal["legal action", "settlement", "reminders"]


class ExperimentConfig(Config):
    """A champion/challenger experiment on the strategies (docs/method.md, "Champion/challenger"):
    of the borrowers whose champion strategy is eligible, those whose hash of experiment name and
    Borrower_ID falls below ``share`` get the challenger strategy instead. Off by default."""

    name: str = Field(
        default="challenger-1",
        min_length=1,
        description="The experiment's name: with the Borrower_ID it decides each borrower's arm, "
        "so keep it for as long as the experiment runs (a new name draws new arms).",
    )
    share: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of the eligible borrowers in the challenger arm. 0: no experiment "
        "(every borrower gets the champion's strategy and no arm).",
    )
    challenger_strategy: StrategyShort = Field(
        default="settlement",
        description="The strategy the challenger arm gets instead of the champion's.",
    )
    # a list of text checked against StrategyShort: Dagster's config has no list of a Literal
    eligible: list[str] = Field(
        default=["legal action"],
        min_length=1,
        description="The champion strategies whose borrowers are in the experiment (the others "
        "keep the champion's strategy and have no arm), of 'legal action', 'settlement', "
        "'reminders'. Must not hold the challenger strategy.",
    )

    @field_validator("eligible")
    @classmethod
    def _known_strategies(cls, eligible: list[str]) -> list[str]:
        unknown = [s for s in eligible if s not in get_args(StrategyShort)]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; use {list(get_args(StrategyShort))}")
        return eligible


class StrategyConfig(Config):
    """How a borrower's recovery strategy is chosen: score bands (the default), or a ranking by
    expected loss cut at the collections team's capacities; the rules-based fallback on arrears
    whenever the model fails its gate (the base rate, the coefficient signs)."""

    assignment: Literal["bands", "capacity"] = Field(
        default="bands",
        description="'bands': legal action and settlement by score thresholds (legal_above, "
        "settlement_from). 'capacity': the borrowers ranked by ranking_key, the first "
        "legal_capacity given legal action, the next settlement_capacity settlement offers, the "
        "rest automated reminders; ties go to the smaller Borrower_ID (text order).",
    )
    legal_capacity: int | None = Field(
        default=None,
        ge=0,
        description="Capacity: borrowers given legal action per cycle. Empty: as many as the "
        "score bands give on this book (the same workload, ranked by expected loss).",
    )
    settlement_capacity: int | None = Field(
        default=None,
        ge=0,
        description="Capacity: borrowers offered settlement per cycle, after the legal-action "
        "ones. Empty: as many as the score bands give on this book.",
    )
    # the same names as domain.RANKING_KEYS (settings imports nothing of the project's; a test
    # keeps the two lists equal)
    ranking_key: Literal["expected_shortfall", "expected_write_off", "risk_score"] = Field(
        default="expected_shortfall",
        description="Capacity: what the borrowers are ranked by, largest first. "
        "expected_shortfall = P(not fully recovered) x outstanding balance; expected_write_off "
        "= P(written off) x outstanding balance; risk_score = the score alone (the bands' order).",
    )
    legal_above: float = Field(
        default=0.75, ge=0.0, le=1.0, description="Score > this: legal action."
    )
    settlement_from: float = Field(
        default=0.50, ge=0.0, le=1.0, description="Score in [this, legal_above]: settlement offers."
    )
    fallback_legal_days: int = Field(
        default=90, ge=0, description="Fallback: DPD above this -> legal."
    )
    fallback_legal_missed: int = Field(
        default=6, ge=0, description="Fallback: missed >= this -> legal."
    )
    fallback_settlement_days: int = Field(
        default=30, ge=0, description="Fallback: DPD above this -> settlement."
    )
    fallback_settlement_missed: int = Field(
        default=2, ge=0, description="Fallback: missed >= this -> settlement."
    )
    experiment: ExperimentConfig = Field(
        default_factory=ExperimentConfig,
        description="A champion/challenger experiment (off unless its share is above 0).",
    )


class FairnessConfig(Config):
    """When the fairness report warns."""

    max_gap: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="Largest unexplained_legal_gap of a group, in points of the legal-action "
        "rate: its rate minus the rate its observed outcomes would give at the whole book's "
        "rate per outcome.",
    )
    min_group: int = Field(default=30, ge=1, description="Smaller groups are shown, not judged.")


# The value of StabilityConfig.baseline that pins the published snapshot (the CLI's default).
PIN_CURRENT = "current"


class StabilityConfig(Config):
    """Which snapshot population_stability compares every run with (its drift baseline)."""

    baseline: str = Field(
        default="",
        description="Empty: keep the baseline (the first published run's, until another is "
        f"pinned). '{PIN_CURRENT}': pin the snapshot published when this run starts. A snapshot "
        "id (SELECT snapshot FROM meta.snapshots, or its first 8 or more characters): pin that "
        "kept snapshot. Pinned, it stays the baseline until pinned again "
        "(`python -m loan_pipeline pin-baseline` does this in a run of its own).",
    )


# --- strategy back-test (history.strategy_backtest) -------------------------------------------


class BacktestConfig(Config):
    """How the strategy back-test compares the strategies (docs/method.md, "Strategy back-test")."""

    reference_strategy: str = Field(
        default="Automated reminders & monitoring",
        description="The strategy every other one is compared with (a full name of "
        "domain.STRATEGIES): each strategy's Fully Recovered share minus this one's, in the "
        "same score band.",
    )
    partial_recovery_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="An assumption, for want of recovered amounts in the book: the share of its "
        "balance at t a Partially Recovered loan recovers (Fully Recovered: all of it; Written "
        "Off: none). Replace it with the lender's cash data where it has them.",
    )
    score_band_width: float = Field(
        default=0.1,
        gt=0.0,
        le=1.0,
        description="Width of the risk-score bands the strategies are compared within (fixed "
        "edges: 0.0-0.1, 0.1-0.2, ...).",
    )


class UpliftConfig(Config):
    """How challenger_uplift judges an experiment: the interval's level and the sample size's
    power, and the uplift worth detecting."""

    significance: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="Two-sided significance: the uplift's interval is at 1 - this (95 %), and "
        "the sample size is for a test at this level.",
    )
    power: float = Field(
        default=0.80,
        gt=0.0,
        lt=1.0,
        description="Power of the sample size: the chance of detecting the target uplift.",
    )
    min_uplift: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="The smallest uplift in the Fully Recovered share worth detecting (e.g. "
        "0.05 = 5 points); the sample size is for it. Empty: for the uplift observed.",
    )
