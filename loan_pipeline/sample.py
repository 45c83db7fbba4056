"""Command-line entry point: ``python -m loan_pipeline.sample --rows N --seed S --out PATH``
writes a first snapshot (:mod:`loan_pipeline.core.generator`); with ``--follow-up PREVIOUS`` it
writes the next cycle's snapshot of PREVIOUS instead (:mod:`loan_pipeline.core.follow_up`).
docs/sample_data.md documents both.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from loan_pipeline.core.follow_up import add_follow_up_arguments, write_follow_up_from
from loan_pipeline.core.generator import PROG, add_book_arguments, write_first


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a seeded synthetic loan book (CSV) with a planted recovery signal, "
        "or, with --follow-up, the next cycle's snapshot of a book written before.",
    )
    add_book_arguments(parser)
    add_follow_up_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.follow_up is not None:
            return write_follow_up_from(parser, args)
        if args.strategies or args.strategy_effect or args.vanish is not None or args.new:
            parser.error("--strategies, --strategy-effect, --vanish and --new need --follow-up")
        return write_first(args)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
