"""Reading a model server's refusal from its pods' container statuses (the termination message)."""

from __future__ import annotations

from typing import Any

from modelops.contract import parse_refusal, refusal_message
from modelops.reconcile.refusal import server_refusal


def pod(name: str, state: dict[str, Any] | None = None, last: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"name": "server", "state": state or {"running": {}}}
    if last is not None:
        status["lastState"] = last
    return {"metadata": {"name": name}, "status": {"containerStatuses": [status]}}


def terminated(message: str | None, code: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {"exitCode": code, "reason": "Error"}
    if message is not None:
        body["message"] = message
    return {"terminated": body}


def test_the_message_format_round_trips_and_other_messages_are_not_refusals() -> None:
    text = refusal_message("FrameworkVersionMismatch", "saved with 1.7.3,\n the server runs 1.7.2")
    assert text == "FrameworkVersionMismatch: saved with 1.7.3, the server runs 1.7.2"
    assert parse_refusal(text) == ("FrameworkVersionMismatch", "saved with 1.7.3, the server runs 1.7.2")
    for other in (None, "", "Traceback (most recent call last):", "Error: boom", "SomethingElse: x"):
        assert parse_refusal(other) is None


def test_the_refusal_is_found_in_the_current_or_last_state_of_any_pod() -> None:
    waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}}
    crashed = pod("m-production-abc-2", waiting, terminated("Traceback (most recent call last): ...", 1))
    refused = pod("m-production-abc-1", waiting, terminated("UntrustedModel: model needs types outside ..."))
    assert server_refusal([pod("m-production-abc-0"), crashed]) is None  # a crash is not a refusal
    assert server_refusal([crashed, refused]) == (
        "UntrustedModel",
        "model needs types outside ...",
        "m-production-abc-1",
    )
    just_exited = pod("m-production-abc-3", terminated("IncompatibleModel: no signature"))
    assert server_refusal([just_exited]) == ("IncompatibleModel", "no signature", "m-production-abc-3")
    assert server_refusal([]) is None
