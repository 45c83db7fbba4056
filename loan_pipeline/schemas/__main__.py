"""``python -m loan_pipeline.schemas``: regenerate ``schema_catalog.json``."""

from loan_pipeline.schemas.catalog import write_catalog

print(f"wrote {write_catalog()}")
