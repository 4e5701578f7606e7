"""Adaptive batching: concurrent infer requests of one server process merged into one ``predict`` call.

Off by default; ``ServeConfig.batching`` (the ModelVersion's ``spec.serving.batching``) turns it
on with ``max_batch_size`` (rows) and ``max_wait_milliseconds``. The scheme is MLServer's adaptive
batcher (``max_batch_size``/``max_batch_time``) and KServe's batcher:

* a request of fewer than ``max_batch_size`` rows joins the queue; the batch starts with the oldest
  queued request and takes the following ones (in arrival order) while their rows fit;
* the batch is predicted when it is full, or ``max_wait`` after its oldest request arrived, or at
  once when that time has passed (while the previous batch was predicting, the queue filled up: the
  batch size adapts to the load without waiting);
* one batch predicts at a time, in a worker thread, so the event loop reads and parses the next
  requests meanwhile; each request then gets its own response (encoding, metrics and prediction log
  stay per request, exactly as without batching).

A request waits at most ``max_wait`` plus the predict still running when it arrived, then its own
batch's predict. Results are the unbatched ones: only requests whose inputs reach the model in the
same form are merged (the float matrix of all-numeric models; otherwise the same column dtypes), the
probabilities are returned only to requests that would get them unbatched, and when a merged call
fails (a row the model rejects, a fault) every request of the batch is predicted alone, so each gets
its own answer or error. Tree ensembles give bit-identical numbers; for linear models numpy's BLAS
sums a matrix product of n rows in another order than one of a single row, so probabilities may
differ in the last bit (about 1e-16), as ``predict_proba`` on a frame differs from row-by-row calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelops.api.modelversion import BatchingSpec

from .protocol import Prediction
from .schema import Batch
from .service import InferenceService, InferJob, InferResult

log = logging.getLogger(__name__)


@dataclass
class _Queued:
    job: InferJob
    key: Hashable
    arrived: float
    future: asyncio.Future[InferResult]


def merge_key(job: InferJob) -> Hashable:
    """Requests with equal keys reach the model in the same form, so their rows can share a call.

    All-numeric models that take the float matrix: always the same form. Others take a DataFrame
    built from the columns: same dtypes, and an integer column stays int64 only without missing
    values (:meth:`~.schema.Batch.frame`), so that is part of the key too.
    """
    if job.model.accepts_matrix:
        return "matrix"
    batch = job.batch
    columns = batch.column_arrays()
    return tuple(
        (
            columns[name].dtype.str,
            name in batch.int_names and columns[name].dtype.kind == "f" and bool(np.isnan(columns[name]).any()),
        )
        for name in batch.names
    )


def merge(batches: list[Batch], matrix: bool) -> Batch:
    """One :class:`~.schema.Batch` holding the rows of ``batches`` in order (same schema, same merge key)."""
    first = batches[0]
    n_rows = sum(b.n_rows for b in batches)
    if matrix:
        return Batch(n_rows, first.names, matrix=np.vstack([b.as_matrix() for b in batches]), int_names=first.int_names)
    parts = [b.column_arrays() for b in batches]
    columns = {name: np.concatenate([p[name] for p in parts]) for name in first.names}
    return Batch(n_rows, first.names, columns=columns, int_names=first.int_names)


class Batcher:
    """Merges concurrent infer requests of this process into ``predict`` calls (see the module docstring).

    Args:
        service: the inference service (encodes each response).
        spec: ``max_batch_size`` (rows) and ``max_wait_milliseconds``.
    """

    def __init__(self, service: InferenceService, spec: BatchingSpec) -> None:
        self.service = service
        self.max_rows = spec.max_batch_size
        self.max_wait = spec.max_wait_milliseconds / 1000.0
        self._queue: deque[_Queued] = deque()
        self._rows = 0
        self._full: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # One thread: one merged predict at a time, the event loop parses the next requests meanwhile.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="batch-predict")

    def accepts(self, job: InferJob) -> bool:
        """Requests of ``max_batch_size`` rows or more are predicted alone."""
        return job.batch.n_rows < self.max_rows

    async def submit(self, job: InferJob) -> InferResult:
        """Queue ``job`` and wait for its result.

        Raises:
            What predicting ``job`` alone raises (:class:`~.errors.RejectedByModel`, faults).
        """
        loop = asyncio.get_running_loop()
        if self._full is None:
            self._full = asyncio.Event()
        future: asyncio.Future[InferResult] = loop.create_future()
        self._queue.append(_Queued(job, merge_key(job), loop.time(), future))
        self._rows += job.batch.n_rows
        if self._task is None:
            self._task = loop.create_task(self._drain())
        elif self._rows >= self.max_rows:
            self._full.set()
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._full is not None
        try:
            while self._queue:
                wait = self._queue[0].arrived + self.max_wait - loop.time()
                if wait > 0 and self._rows < self.max_rows:
                    self._full.clear()
                    try:
                        await asyncio.wait_for(self._full.wait(), wait)
                    except TimeoutError:
                        pass
                batch = self._take()
                results = await loop.run_in_executor(self._executor, self._predict, [q.job for q in batch])
                for queued, result in zip(batch, results, strict=True):
                    if queued.future.done():  # the request's task was cancelled
                        continue
                    if isinstance(result, BaseException):
                        queued.future.set_exception(result)
                    else:
                        queued.future.set_result(result)
        finally:
            self._task = None

    def _take(self) -> list[_Queued]:
        """The oldest queued request and the following ones of the same merge key whose rows fit."""
        first = self._queue.popleft()
        taken, rows, skipped = [first], first.job.batch.n_rows, []
        while self._queue and rows < self.max_rows:
            queued = self._queue.popleft()
            n = queued.job.batch.n_rows
            if queued.key == first.key and rows + n <= self.max_rows:
                taken.append(queued)
                rows += n
            else:
                skipped.append(queued)
        self._queue.extendleft(reversed(skipped))
        self._rows -= rows
        return taken

    def _predict(self, jobs: list[InferJob]) -> list[InferResult | BaseException]:
        """Predict ``jobs`` in one call and encode each response (worker thread)."""
        service = self.service
        if len(jobs) > 1:
            model = jobs[0].model
            merged = merge([j.batch for j in jobs], model.accepts_matrix)
            try:
                prediction = model.predict(merged, want_proba=any(j.wants_proba for j in jobs))
            except Exception:  # noqa: BLE001  (each request is predicted alone below and gets its own error)
                log.debug("a merged predict of %d requests failed; predicting them one by one", len(jobs))
            else:
                service.metrics.observe_batch(merged.n_rows)
                out: list[InferResult | BaseException] = []
                start = 0
                for job in jobs:
                    end = start + job.batch.n_rows
                    # As unbatched: probabilities when asked for, or when they decide the class.
                    proba = prediction.proba
                    keep = proba is not None and (model.proba_decides or job.wants_proba)
                    sliced = proba[start:end] if keep and proba is not None else None
                    part = Prediction(prediction.predict[start:end], sliced)
                    out.append(_attempt(service.respond, job, part))
                    start = end
                return out
        results: list[InferResult | BaseException] = []
        for job in jobs:
            results.append(_attempt(service.run, job))
            service.metrics.observe_batch(job.batch.n_rows)
        return results


def _attempt(call: Callable[..., InferResult], *args: object) -> InferResult | BaseException:
    """``call(*args)``, or the exception it raised (handed to the waiting request)."""
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001  (re-raised in the request's own task by the future)
        return exc
