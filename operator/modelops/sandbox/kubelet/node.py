"""The kubelet as a node of the real control plane: a Node, its Lease, and the Pods bound to it.

With the real control plane, the Job, CronJob, Deployment, ReplicaSet, EndpointSlice and garbage
collector controllers are kube-controller-manager's and kube-scheduler binds pods; this module only
does what a kubelet does:

* registers the Node ``sandbox`` (capacity, allocatable, addresses, nodeInfo, the Ready,
  MemoryPressure, DiskPressure and PIDPressure conditions, the log endpoint's port), renews its
  Lease in ``kube-node-lease`` every 10 s and posts node status every minute, as the real kubelet's
  ``nodeLeaseDurationSeconds=40`` and ``nodeStatusReportFrequency=1m`` do;
* runs every Pod whose ``spec.nodeName`` is this node as local processes (:mod:`.pods`: images,
  env, volumes; :mod:`.probes`), each with its own address so that it listens on its real
  containerPort: the pod IP the API sees is ``10.244.x.y`` (the node's ``podCIDR``), and the
  process listens on the loopback address ``127.244.x.y`` it maps to (``MODELOPS_HOST``). The real
  apiserver refuses loopback addresses in EndpointSlices ("may not be in the loopback range"), so
  the pod IP cannot be the loopback address itself; nothing ever connects to a ``10.244`` address:
  probes, and the Service forwarders reading EndpointSlices, go to the loopback twin
  (:func:`loopback_for`);
* honours ``restartPolicy`` (Always and OnFailure restart with the compressed crash backoff,
  Never runs once) and reports Pod status: phase, the PodReadyToStartContainers, Initialized,
  ContainersReady and Ready conditions, ``containerStatuses`` (waiting reasons, running, terminated
  with exit code, reason, signal and the termination message, ``lastState``, ``restartCount``),
  ``podIP`` and ``hostIP``;
* on deletion (``deletionTimestamp``) runs the container's ``preStop`` ``sleep`` hook (the process
  keeps serving while the EndpointSlice controller and the Service forwarders drop the pod), then
  stops the processes within what is left of the grace period (at least
  :data:`MIN_GRACE_AFTER_PRE_STOP`, as the real kubelet grants), then deletes the Pod with
  ``gracePeriodSeconds: 0``, which is how a real kubelet confirms a pod is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import platform
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import httpx

from ...contract import ENV_HOST
from ..client import LEASES, NODES, PODS, ApiError, AsyncApi, ConflictError, NotFoundError
from .common import KubeletContext, ObjectGone, write_status
from .informer import Informer, Key
from .pods import (
    LocalPod,
    Owner,
    PodSetupError,
    ProcessHandle,
    build_launch,
    grace_seconds,
    now_iso,
    termination_message,
)
from .probes import ProbeLoop, supervise

log = logging.getLogger("modelops.sandbox.kubelet")

NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
LEASE_RENEW_SECONDS = 10.0
NODE_STATUS_SECONDS = 60.0
#: Pod IPs as the API sees them (the node's podCIDR) …
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
#: … and the loopback addresses the pod processes listen on, one to one.
LOOPBACK_CIDR = ipaddress.ip_network("127.244.0.0/16")


def loopback_for(address: str) -> str:
    """The loopback address a pod IP maps to (``10.244.1.7`` → ``127.244.1.7``); other addresses
    are returned unchanged. Raises ValueError for a string that is not an IP address."""
    ip = ipaddress.ip_address(address)
    if ip not in POD_CIDR:
        return address
    return str(LOOPBACK_CIDR.network_address + (int(ip) - int(POD_CIDR.network_address)))
#: Pod phases after which nothing runs again.
_FINAL = ("Succeeded", "Failed")


def listening_addresses(table: str = "/proc/net/tcp") -> set[str]:
    """IPv4 addresses with a listening TCP socket on this host (Linux ``/proc/net/tcp``; empty when it
    cannot be read). Another sandbox on the same host uses the same loopback twins."""
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            found.add(str(ipaddress.IPv4Address(bytes(reversed(bytes.fromhex(fields[1].split(":")[0]))))))
    return found


class AddressPool:
    """Pod IPs (in POD_CIDR), one per pod uid, reused after release. A fresh address whose loopback
    twin something on the host listens on (a pod of another sandbox on the same machine) is skipped:
    the pod could not bind it, and connections to it would reach the other sandbox's pod."""

    def __init__(self, busy: Callable[[], set[str]] = listening_addresses) -> None:
        self._free = (str(ip) for ip in POD_CIDR.hosts() if not str(ip).endswith((".0", ".1", ".255")))
        self._released: list[str] = []
        self._by_uid: dict[str, str] = {}
        self._busy = busy

    def take(self, uid: str, wanted: str | None = None) -> str:
        """The address of pod ``uid`` (``wanted`` when it is a free address of the pool, e.g. after a
        kubelet restart: the pod's own process may still listen there). Raises RuntimeError when the
        pool is exhausted."""
        if uid in self._by_uid:
            return self._by_uid[uid]
        if wanted and ipaddress.ip_address(wanted) in POD_CIDR and wanted not in self._by_uid.values():
            address = wanted
            with contextlib.suppress(ValueError):
                self._released.remove(wanted)
        else:
            busy = self._busy()
            address = next((a for a in self._released if loopback_for(a) not in busy), "")
            if address:
                self._released.remove(address)
            else:
                address = next(self._free, "")
                while address and (address in self._by_uid.values() or loopback_for(address) in busy):
                    if loopback_for(address) in busy:
                        self._released.append(address)  # tried again once the other pod is gone
                    address = next(self._free, "")
            if not address:
                raise RuntimeError(f"no free pod address left in {POD_CIDR}")
        self._by_uid[uid] = address
        return address

    def release(self, uid: str) -> None:
        """Give a pod's address back."""
        address = self._by_uid.pop(uid, None)
        if address:
            self._released.append(address)


def _owner(pod: Mapping[str, Any]) -> Owner:
    """The workload a pod belongs to, for the pod records (``modelops sandbox logs NAME``): its
    controller, or the Deployment of its ReplicaSet (the ReplicaSet name less the pod-template-hash)."""
    meta = pod.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        return Owner("Pod", str(meta["name"]), None, "v1")
    name, thash = str(ref.get("name")), (meta.get("labels") or {}).get("pod-template-hash")
    if ref.get("kind") == "ReplicaSet" and thash and name.endswith(f"-{thash}"):
        return Owner("Deployment", name.removesuffix(f"-{thash}"), None, "apps/v1")
    return Owner(str(ref.get("kind")), name, ref.get("uid"), str(ref.get("apiVersion")))


def terminated_state(code: int, started: str, finished: str) -> dict[str, Any]:
    """A ``terminated`` container state: a negative ``code`` is a signal (exit code 128 + signal)."""
    state: dict[str, Any] = {"startedAt": started, "finishedAt": finished}
    if code < 0:
        sig = -code
        state.update(exitCode=128 + sig, signal=sig, reason="Error",
                     message=f"killed by signal {sig} ({signal.Signals(sig).name})")
    else:
        state.update(exitCode=code, reason="Completed" if code == 0 else "Error")
    return {"terminated": state}


async def confirm_deletion(api: AsyncApi, namespace: str, name: str, uid: str) -> None:
    """Delete a terminating Pod with ``gracePeriodSeconds: 0`` and a uid precondition, as a kubelet
    confirms its containers are gone; errors (already gone, a newer pod of that name) are ignored."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
    with contextlib.suppress(ApiError, httpx.HTTPError):
        await api.request("DELETE", PODS.path(namespace, name), json=body)


#: Seconds a container always gets between SIGTERM and SIGKILL after its preStop hook, even when the
#: hook used up the grace period (the real kubelet's minimum, kuberuntime_container.go).
MIN_GRACE_AFTER_PRE_STOP = 2.0


class PodWorker:
    """Runs one Pod bound to this node until it ends or is deleted; reports its status."""

    def __init__(self, node: NodeAgent, pod: Mapping[str, Any], pod_ip: str) -> None:
        self.node = node
        self.ctx = node.ctx
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
        self.spec: Mapping[str, Any] = pod.get("spec") or {}
        self.local = LocalPod(namespace=self.namespace, name=self.name, owner=_owner(pod),
                              template={"metadata": meta, "spec": self.spec}, state_dir=self.ctx.config.state_dir,
                              labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
                              uid=self.uid, ip=loopback_for(pod_ip))
        self.pod_ip = pod_ip
        self.container: Mapping[str, Any] = (self.spec.get("containers") or [{}])[0]
        self.policy = str(self.spec.get("restartPolicy") or "Always")
        self.handle: ProcessHandle | None = None
        self.started = now_iso()
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.restarts = 0
        self.ready = False
        self.initialized = False
        self.phase = "Pending"
        self.deleting = asyncio.Event()
        self.pod_deleted = False  # the Pod was deleted (its preStop hook runs), not the kubelet stopping
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """The Pod status to write (a full replacement of the fields a kubelet owns)."""
        running = "running" in self.state
        now = now_iso()

        def cond(ctype: str, ok: bool) -> dict[str, Any]:
            return {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": now}

        container = {
            "name": self.container.get("name", "main"), "image": self.container.get("image", ""),
            "imageID": "", "containerID": f"sandbox://{self.uid}", "ready": self.ready, "started": running,
            "restartCount": self.restarts, "state": self.state, "lastState": self.last_state,
        }
        return {
            "phase": self.phase,
            "conditions": [cond("PodReadyToStartContainers", True), cond("Initialized", self.initialized),
                           cond("ContainersReady", self.ready), cond("Ready", self.ready),
                           cond("PodScheduled", True)],
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.started,
            "containerStatuses": [container],
            "qosClass": _qos(self.container),
        }

    async def publish(self) -> None:
        """Write the status (transient API errors are retried; a deleted pod ends the worker)."""
        try:
            await write_status(self.ctx.api, PODS, self.namespace, self.name, self.status())
        except ObjectGone:
            self.deleting.set()
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("pod %s/%s: status write failed: %s", self.namespace, self.name, exc)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker task."""
        self.task = asyncio.create_task(self._main(), name=f"pod {self.namespace}/{self.name}")

    async def _main(self) -> None:
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            raise
        except Exception:  # task boundary: logged with traceback, the pod is reported Failed
            log.exception("pod %s/%s worker crashed", self.namespace, self.name)
            self.phase = "Failed"
            await self.publish()
        finally:
            self.local.write_record(self.phase)

    async def _lifecycle(self) -> None:
        self.local.write_record("Pending")
        containers = self.spec.get("containers") or []
        if len(containers) != 1:
            self.state = {"waiting": {"reason": "SandboxUnsupported", "message":
                                      f"the sandbox runs pods with one container, this one has {len(containers)}"}}
            await self.publish()
            return
        await self.publish()
        exponent = 0
        while not self.deleting.is_set():
            try:
                if not self.initialized:
                    await self._run_init_containers()
                    self.initialized = True
                launch = await build_launch(self.ctx.api, self.ctx.images, self.local, self.container,
                                            {ENV_HOST: self.local.ip})
                self.handle = await ProcessHandle.start(launch)
            except PodSetupError as error:
                self.state = {"waiting": {"reason": error.reason, "message": error.message}}
                if error.reason == "StartError" and self.policy == "Never":
                    self.phase = "Failed"
                    self.state = terminated_state(128, now_iso(), now_iso())
                    self.state["terminated"].update(reason="StartError", message=error.message)
                    await self.publish()
                    return
                await self.publish()
                delay = self.ctx.config.setup_retry_seconds if error.retryable else self._backoff(exponent)
                exponent += 0 if error.retryable else 1
                await self._sleep(delay)
                continue
            self.phase = "Running"
            self.state = {"running": {"startedAt": self.handle.started_iso}}
            self.local.write_record("Running", pid=self.handle.pid)
            await self.publish()
            ran_from = time.monotonic()
            why = await self._supervise(launch.env)
            grace = grace_seconds(self.spec, self.ctx.config.grace_max)
            if why == "deleted" and self.pod_deleted:
                grace = max(grace - await self._pre_stop(grace), MIN_GRACE_AFTER_PRE_STOP)
            self.ready = False
            code = await self.handle.stop(grace)
            finished = terminated_state(code, self.handle.started_iso, now_iso())
            message = termination_message(self.local, self.container, code)
            if message:  # terminationMessagePath (or the log tail with FallbackToLogsOnError)
                finished["terminated"]["message"] = message
            self.handle = None
            if self.deleting.is_set():
                self.state = finished
                return
            if (code == 0 and self.policy in ("Never", "OnFailure")) or (code != 0 and self.policy == "Never"):
                self.state = finished
                self.phase = "Succeeded" if code == 0 else "Failed"
                self.local.write_record(self.phase, exitCode=code)
                await self.publish()
                return
            self.last_state = finished
            self.restarts += 1
            exponent = 0 if time.monotonic() - ran_from > 60 else exponent + 1
            delay = self._backoff(exponent)
            log.info("pod %s/%s %s (exit %s); restarting in %.1fs", self.namespace, self.name, why, code, delay)
            self.state = {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": f"back-off {delay:g}s restarting failed container ({why})"}}
            await self.publish()
            await self._sleep(delay)

    async def _pre_stop(self, grace: float) -> float:
        """Run the container's ``lifecycle.preStop`` hook before SIGTERM; returns the seconds it took.

        The ``sleep`` action is honoured (at most ``grace``); ``exec`` and ``httpGet`` hooks are not
        run here (logged), as a local process has no container to exec into.
        """
        hook = (self.container.get("lifecycle") or {}).get("preStop") or {}
        if "sleep" in hook:
            seconds = min(float(hook["sleep"].get("seconds") or 0), grace)
            await asyncio.sleep(seconds)
            return seconds
        if hook:
            log.info("pod %s/%s: preStop %s not run by the local node", self.namespace, self.name, sorted(hook))
        return 0.0

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.deleting.wait(), seconds)

    def _backoff(self, exponent: int) -> float:
        cfg = self.ctx.config
        return float(min(cfg.crash_backoff_base * 2 ** max(exponent - 1, 0), cfg.crash_backoff_max))

    async def _run_init_containers(self) -> None:
        for init in self.spec.get("initContainers") or []:
            launch = await build_launch(self.ctx.api, self.ctx.images, self.local, init, {ENV_HOST: self.local.ip})
            code = await (await ProcessHandle.start(launch)).wait()
            if code != 0:
                raise PodSetupError("StartError", f"init container {launch.container!r} exited with code {code}")

    async def _supervise(self, env: Mapping[str, str]) -> str:
        """Run the probes until the process exits, liveness fails or the pod is deleted."""
        assert self.handle is not None
        period_max = self.ctx.config.probe_period_max

        def make_probe(kind: str, initial: bool, notify: asyncio.Event) -> ProbeLoop | None:
            spec = self.container.get(kind)
            return ProbeLoop(spec, self.container, None, env, period_max, initial, notify,
                             host=self.local.ip) if spec else None

        async def set_ready(ready: bool) -> None:
            self.ready = ready
            await self.publish()

        return await supervise(self.container, make_probe,
                               {"exited": self.handle.wait(), "deleted": self.deleting.wait()}, set_ready)

    async def terminate(self, confirm: bool) -> None:
        """Stop the processes (grace period); with ``confirm``, report the final status and delete the
        Pod object with ``gracePeriodSeconds: 0`` (preconditioned on its uid). The preStop hook runs
        only for a deleted Pod (``confirm``), not when the kubelet itself stops."""
        self.pod_deleted = confirm
        self.deleting.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if confirm:
            if self.phase not in _FINAL:
                self.ready = False
                await self.publish()
            await confirm_deletion(self.ctx.api, self.namespace, self.name, self.uid)


def _qos(container: Mapping[str, Any]) -> str:
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if not requests and not limits:
        return "BestEffort"
    if limits and all(limits.get(k) == requests.get(k, limits.get(k)) for k in ("cpu", "memory")) \
            and {"cpu", "memory"} <= set(limits):
        return "Guaranteed"
    return "Burstable"


class NodeAgent:
    """Registers the Node, keeps its Lease and status, and runs a :class:`PodWorker` per bound Pod."""

    def __init__(self, ctx: KubeletContext, pods: Informer, node_name: str, log_port: int, release: str) -> None:
        self.ctx = ctx
        self.pods = pods
        self.node_name = node_name
        self.log_port = log_port
        self.release = release
        self.workers: dict[str, PodWorker] = {}  # by pod uid
        self.addresses = AddressPool()
        self.wake = asyncio.Event()
        self._confirming: set[str] = set()  # uids of deleted pods whose deletion we confirmed
        self._tasks: set[asyncio.Task[None]] = set()
        self._since = now_iso()
        pods.listeners.append(self._changed)

    def _changed(self, key: Key) -> None:
        self.wake.set()

    def node_manifest(self) -> dict[str, Any]:
        """The Node object (metadata and spec) as the kubelet registers it."""
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": {
            "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(), "node.kubernetes.io/instance-type": "modelops-sandbox"}},
            "spec": {"podCIDR": str(POD_CIDR), "podCIDRs": [str(POD_CIDR)]}}

    def node_status(self) -> dict[str, Any]:
        """Node status: capacity (see KubeletConfig.node_cpu/node_memory), conditions, nodeInfo."""
        cfg = self.ctx.config
        now = now_iso()
        capacity = {"cpu": cfg.node_cpu, "memory": cfg.node_memory, "pods": str(cfg.node_pods),
                    "ephemeral-storage": "100Gi"}

        def cond(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            return {"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": self._since}

        return {
            "capacity": capacity, "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", False, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", False, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", True, "KubeletReady", "kubelet is posting ready status (modelops sandbox node)"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": str(os.getpid()),
                         "kernelVersion": platform.release(),
                         "osImage": "modelops sandbox (local processes)", "containerRuntimeVersion": "sandbox://0.1.0",
                         "kubeletVersion": self.release, "kubeProxyVersion": "", "operatingSystem": "linux",
                         "architecture": _arch()},
        }

    async def register(self) -> None:
        """Create the Node (or take over an existing one) and post its status."""
        self._since = now_iso()
        try:
            await self.ctx.api.create(NODES, self.node_manifest())
        except ConflictError:
            pass  # registered before (a kubelet restart): the status write below marks it Ready again
        await write_status(self.ctx.api, NODES, "", self.node_name, self.node_status())

    async def heartbeat(self) -> None:
        """Renew the Lease every 10 s and post node status every minute (forever)."""
        last_status = time.monotonic()
        while True:
            await self._renew_lease()
            if time.monotonic() - last_status >= NODE_STATUS_SECONDS:
                with contextlib.suppress(ApiError, httpx.HTTPError, ObjectGone):
                    await write_status(self.ctx.api, NODES, "", self.node_name, self.node_status(), attempts=2)
                last_status = time.monotonic()
            await asyncio.sleep(LEASE_RENEW_SECONDS)

    async def _renew_lease(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now}
        try:
            try:
                await self.ctx.api.patch(LEASES, self.node_name, {"spec": spec}, NODE_LEASE_NAMESPACE)
            except NotFoundError:
                node = await self.ctx.api.get(NODES, self.node_name)
                owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node["metadata"]["uid"]}
                await self.ctx.api.create(LEASES, {"metadata": {"name": self.node_name, "ownerReferences": [owner]},
                                                   "spec": spec}, NODE_LEASE_NAMESPACE)
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("node lease renewal failed: %s", exc)

    async def run(self) -> None:
        """Register, then keep workers in step with the bound pods (forever)."""
        await self.register()
        beat = asyncio.create_task(self.heartbeat(), name="node heartbeat")
        try:
            await self.pods.synced.wait()
            while True:
                self.wake.clear()
                await self.reconcile()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 2.0)
        finally:
            beat.cancel()

    async def reconcile(self) -> None:
        """Start workers for new pods, stop and confirm deleted ones, forget finished ones."""
        seen: set[str] = set()
        for _, pod in self.pods.items():
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid"))
            seen.add(uid)
            worker = self.workers.get(uid)
            if meta.get("deletionTimestamp"):
                if worker is not None:
                    self.workers.pop(uid)
                    self._confirming.add(uid)
                    self._spawn(self._finish(worker, confirm=True))
                elif uid not in self._confirming:
                    self._confirming.add(uid)
                    self._spawn(self._confirm_gone(pod))
                continue
            if worker is None and (pod.get("status") or {}).get("phase") not in _FINAL:
                address = self.addresses.take(uid, (pod.get("status") or {}).get("podIP"))
                worker = PodWorker(self, pod, address)
                self.workers[uid] = worker
                worker.start()
        for uid in [u for u in self.workers if u not in seen]:
            self._spawn(self._finish(self.workers.pop(uid), confirm=False))
        self._confirming &= seen

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, worker: PodWorker, confirm: bool) -> None:
        await worker.terminate(confirm)
        self.addresses.release(worker.uid)

    async def _confirm_gone(self, pod: Mapping[str, Any]) -> None:
        """A pod being deleted that runs nothing here (finished, or from before a restart)."""
        meta = pod["metadata"]
        await confirm_deletion(self.ctx.api, meta["namespace"], meta["name"], meta["uid"])

    async def shutdown(self) -> None:
        """Stop every pod process (the Pod objects stay; the node controller will see the node go)."""
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(w.terminate(confirm=False) for w in workers))


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
