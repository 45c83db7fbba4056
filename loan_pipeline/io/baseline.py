"""The drift baseline: the snapshot population_stability compares every run with, kept together
with its frozen risk model.

Two items of every snapshot, under ``monitoring/baseline/``:

- ``baseline.json``: which snapshot, when, by which run and how it became the baseline, the
  SHA-256 of its risk model, and its profiles (``core.monitoring.baseline_record``);
- ``risk_model.pkl`` (and ``.sha256``): that snapshot's risk model, byte for byte: the frozen
  model that scores every later book. Loaded like any model: only when its bytes match the
  digest Dagster's event log recorded (``io.models``).

Only the run that sets the baseline writes them, into its own folder like every output: the
first run that has none to compare with, or a run that pins another snapshot
(``settings.StabilityConfig.baseline``, ``python -m loan_pipeline pin-baseline``). Every other
publication carries them over from the published snapshot by hard link (``Store.publish``), so
the baseline outlives the snapshot it was taken from when that snapshot's folder is cleared
after ``keep_days``; and a run that fails publishes nothing, so the published baseline stays.
Why files in every snapshot rather than a folder of their own beside the snapshots: they are
then switched with everything else by publication's one rename, read from one place, cleared by
nothing, and a failed run cannot leave a half-pinned baseline.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass

from loan_pipeline.io import models, runs
from loan_pipeline.store.files import StorageError
from loan_pipeline.store.snapshots import DIGEST

FOLDER = "monitoring/baseline"
RECORD = f"{FOLDER}/baseline.json"
MODEL = f"{FOLDER}/risk_model.pkl"
PROFILE = "monitoring/profile.json"  # every run's profiles (population_stability)
RISK_MODEL = models.model_item("risk_model")
# where the event log records the frozen model's SHA-256 when a run sets the baseline: the
# metadata of its population_stability materialization, under this key
RECORDED_BY = ("population_stability", "baseline_model_sha256")
# a snapshot id given to pin must name one snapshot: as long as the catalog's schema names
MIN_ID_PREFIX = 8


@dataclass
class Baseline:
    record: dict  # what baseline.json says
    model: object  # the frozen RiskModel
    data: bytes | None = None  # its pickle: set when this run sets the baseline (and writes it)


def own_model(context) -> tuple[bytes, str]:
    """The pickle of the risk model this run reads (its own, or the published one) and its
    SHA-256, verified: the model a baseline set by this run freezes."""
    return models.verified_bytes(
        context.instance, runs.context_lineage(context), RISK_MODEL, required=True
    )


def kept(context) -> Baseline | None:
    """The baseline this run starts from: set by a run it continues (the one it re-executes, a
    successful run not yet published), else the published one; None when there is none yet.
    Not this run's own: it is about to decide what its baseline is."""
    lineage = runs.context_lineage(context)[1:]
    path = runs.store().find(RECORD, lineage)
    if path is None:
        return None
    record = json.loads(path.read_text())
    data, digest = models.verified_bytes(
        context.instance, lineage, MODEL, required=True, recorded_by=RECORDED_BY
    )
    if digest != record["model_sha256"]:
        raise StorageError(
            f"the drift baseline {path} names risk model {record['model_sha256'][:12]}…, but "
            f"the model kept beside it is {digest[:12]}…: pin a baseline again "
            "(python -m loan_pipeline pin-baseline SNAPSHOT_ID)"
        )
    return Baseline(record, pickle.loads(data))


def pinned(context, which: str) -> Baseline:
    """Snapshot ``which`` as the new baseline: ``current`` (``settings.PIN_CURRENT``) for the
    published one, else a kept snapshot's id or its first ``MIN_ID_PREFIX`` or more characters:
    its profiles and its risk model (verified), pinned by this run."""
    from loan_pipeline.core.monitoring import baseline_record
    from loan_pipeline.settings import PIN_CURRENT

    store = runs.store()
    snapshots = [m["snapshot"] for m in store.published()]
    if which == PIN_CURRENT:
        found = snapshots[:1]
    else:
        found = [s for s in snapshots if s.startswith(which)] if len(which) >= MIN_ID_PREFIX else []
    if len(found) != 1:
        kept_ones = ", ".join(snapshots) or "none"
        raise ValueError(
            f"cannot pin {which!r} as the drift baseline: "
            + ("nothing is published yet" if not snapshots else "it names no kept snapshot")
            + (" (give at least 8 characters of the id)" if 0 < len(which) < 8 else "")
            + (" (it names several)" if len(found) > 1 else "")
            + f"; kept snapshots, newest first: {kept_ones}"
        )
    snapshot = found[0]
    folder = store.run_dir(snapshot)
    data, digest = models.published_bytes(
        RISK_MODEL, context.instance, required=True, snapshot=folder
    )
    profile_path = folder / PROFILE
    if not profile_path.exists():
        raise ValueError(
            f"cannot pin snapshot {snapshot} as the drift baseline: it has no {PROFILE} "
            "(population_stability never ran for it)"
        )
    model = pickle.loads(data)
    record = baseline_record(
        snapshot,
        json.loads(profile_path.read_text()),
        digest,
        frozen=getattr(model, "primary", None) is not None,
        pinned_by=runs.run_id_of(context),
        how=f"pinned ({which})",
        pinned_at=time.time(),
    )
    return Baseline(record, model, data)


def of_this_run(context, profile: dict, model, data: bytes, digest: str) -> Baseline:
    """This run as the baseline (there was none): its ``profile`` and its risk model."""
    from loan_pipeline.core.monitoring import baseline_record

    record = baseline_record(
        runs.run_id_of(context),
        profile,
        digest,
        frozen=getattr(model, "primary", None) is not None,
        pinned_by=runs.run_id_of(context),
        how="first run without a baseline",
        pinned_at=time.time(),
    )
    return Baseline(record, model, data)


def write(context, baseline: Baseline) -> None:
    """The baseline's files into this run's folder, each written whole (``atomic_write``): the
    model and its digest first, the record that names them last."""
    runs.write_file(context, MODEL, baseline.data)
    runs.write_file(context, MODEL + DIGEST, baseline.record["model_sha256"].encode())
    runs.write_file(context, RECORD, json.dumps(baseline.record).encode())
