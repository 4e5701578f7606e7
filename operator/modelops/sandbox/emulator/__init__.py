"""The sandbox's Kubernetes API emulator: kmock's ``KubernetesEmulator`` with kube-apiserver semantics.

Modules: :mod:`.server` (the kmock subclass: routing, discovery, list/watch), :mod:`.registry`
(object semantics), :mod:`.store` (indexed in-memory storage and watch history),
:mod:`.catalogue` (served resources), :mod:`.patches`, :mod:`.selectors`, :mod:`.cel`,
:mod:`.builtins` (defaults/validation of built-in kinds) and :mod:`.tables` (server-side printing).
"""

from .catalogue import Catalogue, ResourceType, read_crds
from .registry import Registry
from .server import ApiEmulator
from .store import Store

__all__ = ["ApiEmulator", "Catalogue", "Registry", "ResourceType", "Store", "read_crds"]
