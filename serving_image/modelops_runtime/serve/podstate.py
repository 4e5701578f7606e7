"""A worker's model state, shared with the other workers of its pod (:mod:`.workers`).

:class:`WorkerState` is the one-process :class:`~.model.ModelState` whose phase is also published
in the worker's shared state byte, and whose readiness and liveness are the pod's, whichever worker
answers the probe: ready when this worker has its model and no other worker that accepts connections
is still loading; live unless some worker's loader crashed. Infer requests only need this worker's
own model (:meth:`~.service.InferenceService.model_or_raise` reads ``loaded``).
"""

from __future__ import annotations

from .model import ModelState
from .workers import SLOT_CRASHED, SLOT_IDLE, SLOT_LOADING, SLOT_READY, Worker


class WorkerState(ModelState):
    """The model state of worker ``worker.index`` (see the module docstring).

    A worker that loads before accepting connections (``worker.preload``) publishes nothing until
    its model is ready: it receives no requests meanwhile, so it must not hold the pod's readiness back.
    """

    def __init__(self, uri: str, worker: Worker) -> None:
        self._worker = worker
        self._phase = "loading"
        super().__init__(uri)

    @property
    def phase(self) -> str:
        """``loading``, ``ready``, ``refused`` or ``crashed`` (as :class:`~.model.ModelState`)."""
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        self._phase = value
        accepting = not self._worker.preload
        code = {
            "loading": SLOT_LOADING if accepting else SLOT_IDLE,
            "ready": SLOT_READY,
            "crashed": SLOT_CRASHED if accepting else SLOT_IDLE,
        }.get(value, SLOT_IDLE)
        self._worker.publish(code)

    @property
    def ready(self) -> bool:
        """This worker has its model and no other accepting worker is still loading."""
        return self.loaded is not None and SLOT_LOADING not in self._worker.others()

    @property
    def live(self) -> bool:
        """No worker's loader crashed."""
        return self._phase != "crashed" and SLOT_CRASHED not in self._worker.others()

    @property
    def reason(self) -> str:
        """Why the pod is (not) ready: this worker's reason, or the worker that holds readiness back."""
        if self.loaded is not None:
            others = self._worker.others()
            if SLOT_LOADING in others or SLOT_CRASHED in others:
                what = "crashed" if SLOT_CRASHED in others else "is still loading"
                return f"another worker of this pod ({self._worker.count} workers) {what} {self.uri}"
        return self._reason

    @reason.setter
    def reason(self, value: str) -> None:
        self._reason = value
