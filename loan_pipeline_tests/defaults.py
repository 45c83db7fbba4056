"""Settings for tests that call a core function directly, at the run configuration's defaults.

The ``Config`` classes of ``loan_pipeline.settings`` are the one place a default is said; core
functions take every configured value as a required keyword, so a test takes them from there
rather than repeating the numbers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from dagster import Config


def config_kwargs(func: Callable, config: type[Config], **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``func`` that ``config`` sets, at the config's defaults, with
    ``overrides`` (each one a parameter of ``func``: a misspelling fails here too)."""
    parameters = inspect.signature(func).parameters
    unknown = sorted(set(overrides) - set(parameters))
    if unknown:
        raise TypeError(f"{func.__name__} has no parameter {', '.join(unknown)}")
    defaults = config().model_dump()
    return {name: value for name, value in defaults.items() if name in parameters} | overrides
