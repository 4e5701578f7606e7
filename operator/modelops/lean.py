"""Keep the operator process free of the data stack (pandas, pyarrow, scipy, scikit-learn, numpy).

The operator talks to MLflow through ``MlflowClient`` only, which needs none of them. But MLflow's
package ``__init__`` imports pandas (and through it pyarrow and scipy) whenever they are installed,
for datasets, evaluation and GenAI features the operator never calls: measured here, importing
``mlflow.tracking`` costs the operator 156 MiB of RSS with them installed and 36 MiB without
(``mlflow-skinny``, which guards every such import), out of 237 vs 113 MiB for the whole operator at
start. The operator image installs ``mlflow-skinny`` (the core dependency); a venv that also holds
the runtime (the sandbox, a developer's checkout) has the full stack installed, so the operator hides
it while MLflow is imported and MLflow takes the path it takes under ``mlflow-skinny``. Afterwards
the stack is importable again: the rollout analysis (``modelops.rollout.analysis``) imports it when
a rollout is analysed, and only then pays for it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Top-level packages the operator process never imports (the runtime image's data stack).
DATA_STACK = ("pandas", "pyarrow", "scipy", "sklearn", "numpy")


def hide_data_stack() -> list[str]:
    """Make the :data:`DATA_STACK` packages unimportable in this process, as if not installed.

    ``import pandas`` then raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns
    None (a ``None`` entry in ``sys.modules``), which is how optional imports see a missing package.
    A package already imported is left as it is. Call it before anything imports MLflow.

    Returns the names hidden.
    """
    hidden = [name for name in DATA_STACK if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    return hidden


@contextmanager
def data_stack_hidden() -> Iterator[list[str]]:
    """:func:`hide_data_stack` for the duration of the block (import MLflow and the operator's
    modules in it), then importable again for code that needs it later. Yields the names hidden."""
    hidden = hide_data_stack()
    try:
        yield hidden
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


__all__ = ["DATA_STACK", "data_stack_hidden", "hide_data_stack"]
