"""The model store: fitted models as pickles in the run's version folder, verified before load.

A pickle runs code when it is loaded, so a model file is loaded only when its bytes match the
SHA-256 recorded when it was written: in the materialization's metadata in Dagster's event log
(outside the storage folder), and in the snapshot's manifest. A file that does not match is
refused with a message, and nothing of it is loaded.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

from dagster import ConfigurableIOManager, InitResourceContext, InputContext, OutputContext

from loan_pipeline.core.compute import release_memory
from loan_pipeline.io import handoff, runs
from loan_pipeline.io.tables import hold_writer_for_run, let_go_after_run
from loan_pipeline.store.files import StorageError
from loan_pipeline.store.snapshots import DIGEST

MODELS = "models"


def model_item(name: str) -> str:
    return f"{MODELS}/{name}.pkl"


class ModelIOManager(ConfigurableIOManager):
    """Stores a fitted model as ``models/<asset>.pkl`` of the run's version, with its SHA-256."""

    def setup_for_execution(self, context: InitResourceContext) -> None:
        hold_writer_for_run(context)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        let_go_after_run(context)

    def handle_output(self, context: OutputContext, obj: object) -> None:
        name = handoff.table_name(context)
        data = pickle.dumps(obj, protocol=5)
        digest = hashlib.sha256(data).hexdigest()
        path = runs.write_file(context, model_item(name), data)
        runs.write_file(context, model_item(name) + DIGEST, digest.encode())
        # later steps of this in-process run get the fitted object itself (they only read it)
        handoff.RUN_FRAMES.put(
            context.run_id, f"model:{name}", obj, handoff.readers(context), size=len(data)
        )
        release_memory()
        context.add_output_metadata({"path": str(path), "sha256": digest})

    def load_input(self, context: InputContext) -> object:
        name = handoff.table_name(context)
        held = handoff.held(context, f"model:{name}")
        if held is not None:
            return held
        store = runs.store()
        lineage = runs.context_lineage(context)
        for run_id in lineage:
            path = store.run_dir(run_id) / model_item(name)
            if path.exists():
                recorded = _recorded_digest(context.instance, name, run_id)
                return load_verified(
                    path, recorded or _sidecar(path), "run again the step that makes it"
                )
        return published_model(name, context.instance, required=True)


def published_model(name: str, instance=None, required: bool = False) -> object | None:
    """The published snapshot's model ``name``, verified (None when nothing is published and
    not ``required``)."""
    store = runs.store()
    manifest = store.manifest()
    info = (manifest or {}).get("items", {}).get(model_item(name))
    if info is None:
        if required:
            raise StorageError(
                f"model {name!r} is neither made by this run nor published in {store.root}: "
                "materialize it first"
            )
        return None
    current = store.current_dir()
    path = current / model_item(name)
    # The digest Dagster's event log (outside the storage folder) recorded: in the publication
    # of the snapshot ``current`` names (by its folder, not by the manifest's word), else when
    # the run that made the file wrote it. The manifest's own digest decides only when this
    # instance has no record of the snapshot at all (a new DAGSTER_HOME).
    recorded = None
    if instance is not None:
        recorded = _published_digest(instance, current.name, name) or _recorded_digest(
            instance, name, info["run"]
        )
        if recorded is None and instance.get_run_by_id(current.name) is not None:
            raise StorageError(
                f"model file {path}: Dagster has a record of snapshot {current.name} but no "
                f"SHA-256 of this model in it; not loaded ({PUBLISHED_REMEDY})"
            )
    return load_verified(path, recorded or info.get("sha256"), PUBLISHED_REMEDY)


PUBLISHED_REMEDY = (
    "restore the file from an intact snapshot under storage/runs/, or move storage/current "
    "aside to start without the published state"
)


def load_verified(path: Path, expected: str | None, remedy: str) -> object:
    """Unpickle ``path`` only if its bytes have the SHA-256 ``expected``."""
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if not expected:
        raise StorageError(f"model file {path} has no recorded SHA-256; not loaded ({remedy})")
    if actual != expected:
        raise StorageError(
            f"model file {path} was changed after it was written: its SHA-256 is "
            f"{actual[:12]}…, the one recorded at write time {expected[:12]}…; not loaded "
            f"({remedy})"
        )
    return pickle.loads(data)


def _published_digest(instance, snapshot: str, name: str) -> str | None:
    """The SHA-256 of model ``name`` in the metadata of ``snapshot``'s publication."""
    from dagster import DagsterEventType

    records = instance.all_logs(snapshot, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    for record in records:
        materialization = record.dagster_event.step_materialization_data.materialization
        if materialization.asset_key.path[-1] == "published_snapshot":
            digests = materialization.metadata.get("model_sha256")
            return digests.value.get(name) if digests is not None else None
    return None


def _sidecar(path: Path) -> str | None:
    digest = path.with_name(path.name + DIGEST)
    return digest.read_text().strip() if digest.exists() else None


def _recorded_digest(instance, name: str, run_id: str) -> str | None:
    """The SHA-256 in the metadata of ``name``'s materialization by ``run_id``, from Dagster's
    event log (None when this instance has no record of it, e.g. another instance wrote it)."""
    from dagster import DagsterEventType

    if instance is None:
        return None
    records = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    for record in records:
        materialization = record.dagster_event.step_materialization_data.materialization
        if materialization.asset_key.path[-1] == name:
            value = materialization.metadata.get("sha256")
            return value.value if value is not None else None
    return None
