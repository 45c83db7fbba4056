"""Command-line entry point: ``python -m loan_pipeline.sample --rows N --seed S --out PATH``.

See :mod:`loan_pipeline.core.generator` for the generator and its planted relation.
"""

from loan_pipeline.core.generator import main

if __name__ == "__main__":
    main()
