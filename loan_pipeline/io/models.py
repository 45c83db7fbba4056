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

from loan_pipeline.core import fingerprint
from loan_pipeline.core.runtime import release_memory
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
        data = fingerprint.pickled(obj)
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
        found = verified_bytes(
            context.instance, runs.context_lineage(context), model_item(name), required=True
        )
        return pickle.loads(found[0])


def published_model(name: str, instance=None, required: bool = False) -> object | None:
    """The published snapshot's model ``name``, verified (None when nothing is published and
    not ``required``)."""
    found = published_bytes(model_item(name), instance, required=required)
    return pickle.loads(found[0]) if found is not None else None


def digest_key(item: str) -> str:
    """What a pickle's SHA-256 is listed under in the publication's ``model_sha256`` metadata:
    a model by its name (``models/risk_model.pkl``: ``risk_model``), any other pickle by its
    item without the suffix (``monitoring/baseline/risk_model``)."""
    return item.removeprefix(f"{MODELS}/").removesuffix(".pkl")


def verified_bytes(
    instance,
    lineage: list[str],
    item: str,
    required: bool = False,
    recorded_by: tuple[str, str] | None = None,
) -> tuple[bytes, str] | None:
    """The bytes of the pickle ``item`` as the run ``lineage[0]`` sees it (made by a run of its
    ``lineage``, else published) and their SHA-256, once they match the digest recorded when
    they were written; None when there is none and not ``required``. ``recorded_by``: the
    asset whose materialization records the digest, and its metadata key (a model: itself,
    ``sha256``)."""
    recorded_by = recorded_by or (digest_key(item), "sha256")
    store = runs.store()
    for run_id in lineage:
        path = store.run_dir(run_id) / item
        if path.exists():
            expected = _recorded_digest(instance, *recorded_by, run_id) or _sidecar(path)
            return read_verified(path, expected, "run again the step that makes it"), expected
    return published_bytes(item, instance, required=required, recorded_by=recorded_by)


def published_bytes(
    item: str,
    instance=None,
    required: bool = False,
    snapshot: Path | None = None,
    recorded_by: tuple[str, str] | None = None,
) -> tuple[bytes, str] | None:
    """The bytes of the pickle ``item`` of the published snapshot (or of the kept
    ``snapshot``, a folder) and their SHA-256, verified; None when it has none and not
    ``required``. ``recorded_by``: as for ``verified_bytes``."""
    recorded_by = recorded_by or (digest_key(item), "sha256")
    store = runs.store()
    folder = snapshot or store.current_dir()
    manifest = store.manifest(folder) if folder is not None else None
    info = (manifest or {}).get("items", {}).get(item)
    if info is None:
        if required:
            raise StorageError(
                f"{item} is neither made by this run nor published in {store.root}: "
                "materialize it first"
            )
        return None
    path = folder / item
    # The digest Dagster's event log (outside the storage folder) recorded: in the publication
    # of the snapshot (named by its folder, not by the manifest's word), else when the run that
    # made the file wrote it. The manifest's own digest decides only when this instance has no
    # record of the snapshot at all (a new DAGSTER_HOME).
    recorded = None
    if instance is not None:
        recorded = _published_digest(instance, folder.name, digest_key(item)) or (
            _recorded_digest(instance, *recorded_by, info["run"])
        )
        if recorded is None and instance.get_run_by_id(folder.name) is not None:
            raise StorageError(
                f"model file {path}: Dagster has a record of snapshot {folder.name} but no "
                f"SHA-256 of this model in it; not loaded ({PUBLISHED_REMEDY})"
            )
    expected = recorded or info.get("sha256")
    return read_verified(path, expected, PUBLISHED_REMEDY), expected


PUBLISHED_REMEDY = (
    "restore the file from an intact snapshot under storage/runs/, or move storage/current "
    "aside to start without the published state"
)


def read_verified(path: Path, expected: str | None, remedy: str) -> bytes:
    """The bytes of ``path``, only if they have the SHA-256 ``expected`` (a pickle is loaded
    only from bytes that passed this)."""
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
    return data


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


def _recorded_digest(instance, asset: str, key: str, run_id: str) -> str | None:
    """The SHA-256 under metadata ``key`` of ``asset``'s materialization by ``run_id``, from
    Dagster's event log (None when this instance has no record of it, e.g. another instance
    wrote it)."""
    from dagster import DagsterEventType

    if instance is None:
        return None
    records = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    for record in records:
        materialization = record.dagster_event.step_materialization_data.materialization
        if materialization.asset_key.path[-1] == asset:
            value = materialization.metadata.get(key)
            return value.value if value is not None else None
    return None
