"""The process boundary shared by the runtime's batch commands (``train``, ``drift``).

One place for what every Job container does the same way: parse its config from
``MODELOPS_JOB_CONFIG`` (or ``--config-file``), send library logs to stdout and keep stderr for
exactly one failure line, turn SIGTERM (Job deadline, pod deletion) into :class:`Terminated`,
write the Kubernetes termination message, and map outcomes to exit codes
(0 success, 2 invalid input, 1 anything else; see modelops.contract.EXIT_INVALID_INPUT).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import TextIO, TypeVar

import pydantic

from modelops.contract import ENV_JOB_CONFIG, ENV_TERMINATION_LOG, EXIT_INVALID_INPUT, TERMINATION_LOG

EXIT_OK = 0
EXIT_FAILED = 1

C = TypeVar("C", bound=pydantic.BaseModel)


class InvalidInput(Exception):
    """The job's input is wrong (config, dataset, target, estimator, URIs): exit code 2, no retry helps.

    The message is one line a person can act on; the job writes it to stderr and to the run's
    failure tag.
    """


class Terminated(BaseException):
    """SIGTERM received: the run is ended KILLED with this reason before the process exits.

    A BaseException so that the jobs' process-boundary ``except Exception`` does not swallow it.
    """


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """A single-line description of ``exc`` of at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_config(model: type[C], env: Mapping[str, str], config_file: str | None = None) -> C:
    """Parse ``model`` from ``config_file`` or the ``MODELOPS_JOB_CONFIG`` env var.

    Raises :class:`InvalidInput` naming the first invalid field when missing or invalid.
    """
    if config_file:
        try:
            raw = Path(config_file).read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read config file {config_file}: {exc.strerror}") from exc
    else:
        raw = env.get(ENV_JOB_CONFIG, "")
        if not raw.strip():
            raise InvalidInput(f"{ENV_JOB_CONFIG} is not set")
    try:
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid job config: {where}: {first['msg']} ({exc.error_count()} error(s))") from exc


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (imports), then freeze what it allocated.

    Importing MLflow, scikit-learn, pandas and skops creates ~230,000 tracked objects and almost
    no garbage, so the collections those allocations trigger (each full one traversing everything
    imported so far) are pure cost: about 0.5 s of CPU on the training job's imports (2 cores).
    On exit every object alive is moved to the permanent generation (``gc.freeze()``, as the
    server does after loading its model), so later collections do not traverse the imported
    modules either; such objects live as long as the process anyway. The collector's enabled
    state is restored. Reference counting frees memory throughout.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[TextIO]:
    """Send library logging, warnings and progress bars to stdout; yield the real stderr."""
    real = sys.stderr
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.redirect_stderr(sys.stdout):
        yield real


def termination_message(message: str) -> None:
    """Write ``message`` where Kubernetes reads a container's termination message, when that file
    exists (``$MODELOPS_TERMINATION_LOG``, else ``/dev/termination-log``)."""
    path = os.environ.get(ENV_TERMINATION_LOG) or TERMINATION_LOG
    if os.path.exists(path):
        with contextlib.suppress(OSError), open(path, "w") as handle:
            handle.write(message)


def run_main(
    command: str,
    description: str,
    args: list[str],
    load: Callable[[Mapping[str, str], str | None], C],
    run: Callable[[C], tuple[int, str]],
    failure_label: str,
) -> int:
    """``modelops-runtime <command> [--config-file PATH]``: load, run, report; returns the exit code.

    ``run`` returns ``(exit code, one-line message)``; the message goes to stdout on success and
    to stderr (``<failure_label> failed: …``) and the termination log otherwise.
    """
    parser = argparse.ArgumentParser(prog=f"modelops-runtime {command}", description=description)
    parser.add_argument("--config-file", help=f"job config JSON file instead of ${ENV_JOB_CONFIG}")
    options = parser.parse_args(args)
    with quiet_stderr() as stderr:
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
        try:
            code, message = run(load(os.environ, options.config_file))
        except InvalidInput as exc:
            code, message = EXIT_INVALID_INPUT, one_line(exc)
        except Terminated as exc:
            code, message = EXIT_FAILED, one_line(exc)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous_handler)
        if code == EXIT_OK:
            print(message, flush=True)
        else:
            print(f"{failure_label} failed: {message}", file=stderr, flush=True)
            termination_message(message)
    return code
