"""What a training dataset URI may point at: the operator-level data URI policy.

One policy object (:class:`DataUriPolicy`) is built from the operator's settings, checked by the
operator at reconcile time (:func:`check_uri`, static: no DNS, no I/O) and passed to the training
pod in its job config (modelops.contract.TrainJobConfig), where the runtime checks again at
fetch time: every address a host name resolves to (:func:`check_address`), every redirect hop,
and local paths after symbolic links are resolved (:func:`check_local_path`).

Rules, in order:

* the scheme must be listed in ``allowed_schemes`` (``file`` stands for local paths, bare or
  ``file://``); fsspec URL chaining (``a::b``) is refused;
* local paths must be absolute and lie under one of ``local_path_prefixes`` once ``..`` (and, in
  the pod, symbolic links) are resolved;
* ``http``/``https`` hosts and ``s3`` buckets must match an ``allowed_hosts`` pattern (shell-style,
  case-insensitive) and no ``denied_hosts`` pattern; a host listed exactly (no wildcard) in
  ``allowed_hosts`` is allowed by name whatever ``denied_hosts`` says. An ``http(s)`` host name
  without a dot is cluster-internal (resolved through the pod's DNS search path) and refused
  unless listed exactly;
* an ``http(s)`` address (a literal, or each address a name resolves to in the pod) must be a
  global unicast address, or lie in one of ``allowed_networks`` (CIDRs): loopback, private
  (RFC 1918, unique local), link-local (cloud metadata at 169.254.169.254), shared (100.64/10),
  multicast, reserved and unspecified addresses are refused by default.

Nothing here imports kopf or does network I/O.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import posixpath
import re
import socket
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

#: Where training pods mount the data volume (settings.data_volume_claim), and the only local
#: path prefix datasets may be read from by default.
DEFAULT_DATA_PATH = "/var/lib/modelops/data"
#: URI schemes allowed by default (``file`` = a local path under the allowed prefixes).
DEFAULT_SCHEMES = ("https", "http", "s3", "file", "sklearn", "penguins")
#: Host names refused by default: loopback names (RFC 6761) and cluster-internal suffixes.
DEFAULT_DENIED_HOSTS = (
    "localhost",
    "*.localhost",
    "*.local",
    "*.internal",
    "*.svc",
    "*.svc.*",
    "*.cluster.local",
)
#: Schemes whose host part is checked against the host patterns (and, for http(s), addresses).
NETWORK_SCHEMES = ("http", "https", "s3")
#: Built-in datasets shipped with the runtime (no I/O at all).
BUILTIN_SCHEMES = ("sklearn", "penguins")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DataUriRefused(ValueError):
    """A dataset URI, redirect target, resolved address or local path is outside the policy.

    The message names the rule, never any content read from the target.
    """


class DataUriPolicy(BaseModel):
    """The data URI policy (see the module docstring for the rules). Built from settings."""

    model_config = ConfigDict(extra="forbid")

    allowed_schemes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCHEMES))
    allowed_hosts: list[str] = Field(default_factory=lambda: ["*"])
    denied_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_DENIED_HOSTS))
    allowed_networks: list[str] = Field(default_factory=list, description="CIDRs allowed besides global addresses.")
    local_path_prefixes: list[str] = Field(default_factory=lambda: [DEFAULT_DATA_PATH])


Target = Literal["builtin", "local", "http", "s3"]


def _scheme_allowed(scheme: str, policy: DataUriPolicy) -> None:
    if scheme not in {s.lower() for s in policy.allowed_schemes}:
        raise DataUriRefused(f"scheme {scheme!r} is not allowed (allowed: {', '.join(policy.allowed_schemes)})")


def classify(uri: str, policy: DataUriPolicy) -> Target:
    """Check ``uri`` statically (no DNS) and say how it is read; raises :class:`DataUriRefused`.

    Static means: the scheme, the local path (``..`` resolved, not symbolic links), the host
    name patterns and IP literals (also the legacy forms ``inet_aton`` accepts, e.g.
    ``2130706433`` or ``0x7f.1``). The training pod repeats the address checks after DNS.
    """
    if "::" in re.sub(r"\[[^\]]*\]", "", uri):  # brackets: an IPv6 literal, not fsspec chaining
        raise DataUriRefused("chained URLs (::) are not allowed")
    if "://" not in uri:
        _scheme_allowed("file", policy)
        check_local_path(uri, policy)
        return "local"
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        _scheme_allowed("file", policy)
        if parts.netloc not in ("", "localhost"):
            raise DataUriRefused(f"file:// URIs name no host, got {parts.netloc!r}")
        check_local_path(unquote(parts.path), policy)
        return "local"
    _scheme_allowed(scheme, policy)
    if scheme in BUILTIN_SCHEMES:
        return "builtin"
    if scheme not in NETWORK_SCHEMES:
        raise DataUriRefused(f"scheme {scheme!r} is allowed by the policy but not supported for training data")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise DataUriRefused(f"{scheme}:// URI without a host")
    check_host(host, policy, internal_names=scheme != "s3")
    if scheme == "s3":
        return "s3"
    literal = ip_literal(host)
    if literal is not None:
        check_address(literal, policy)
    return "http"


def local_path_of(uri: str) -> str:
    """The local path a bare path or ``file://`` URI names (percent-decoded for ``file://``)."""
    return unquote(urlsplit(uri).path) if uri.lower().startswith("file://") else uri


def check_host(host: str, policy: DataUriPolicy, internal_names: bool = True) -> None:
    """Check a host name (or bucket) against the host patterns; raises :class:`DataUriRefused`.

    ``internal_names``: refuse names without a dot (cluster-internal) unless listed exactly.
    """
    host = host.rstrip(".").lower()
    exact = {h.lower() for h in policy.allowed_hosts if not any(ch in h for ch in "*?[")}
    if host in exact:
        return
    if not any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in policy.allowed_hosts):
        raise DataUriRefused(f"host {host!r} matches no allowed host pattern ({', '.join(policy.allowed_hosts)})")
    denied = next((p for p in policy.denied_hosts if fnmatch.fnmatchcase(host, p.lower())), None)
    if denied is not None:
        raise DataUriRefused(f"host {host!r} is denied (pattern {denied!r}: loopback or cluster-internal)")
    if internal_names and "." not in host and ip_literal(host) is None:
        raise DataUriRefused(f"host {host!r} has no dot: a cluster-internal name, allowed only when listed exactly")


def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one (IPv6 in or without brackets, IPv4 in any form
    ``inet_aton`` accepts, which is what the resolver would turn it into), else None."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(ch in "0123456789abcdefx." for ch in text.lower()) and any(ch.isdigit() for ch in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def check_address(address: IPAddress | str, policy: DataUriPolicy) -> None:
    """Refuse an address that is not global unicast unless it lies in ``allowed_networks``.

    IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry. Raises
    :class:`DataUriRefused` naming the address class (loopback, private, link-local, ...).
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for cidr in policy.allowed_networks:
        if ip in ipaddress.ip_network(cidr, strict=False):
            return
    if ip.is_global and not ip.is_multicast:
        return
    kind = next(
        (
            name
            for name, flag in (
                ("loopback", ip.is_loopback),
                ("link-local", ip.is_link_local),
                ("multicast", ip.is_multicast),
                ("unspecified", ip.is_unspecified),
                ("private", ip.is_private),
                ("reserved", ip.is_reserved),
                ("shared (carrier-grade NAT)", ip in ipaddress.ip_network("100.64.0.0/10")),
            )
            if flag
        ),
        "non-global",
    )
    allowed = ", ".join(policy.allowed_networks) or "none"
    raise DataUriRefused(f"address {ip} is {kind} and not in the allowed networks ({allowed})")


def check_local_path(path: str, policy: DataUriPolicy, *, resolve_links: bool = False) -> str:
    """Return the normalised absolute ``path`` when it lies under an allowed prefix.

    ``resolve_links`` (in the training pod) follows symbolic links first (``os.path.realpath``),
    so a link inside the data volume cannot point outside it. Raises :class:`DataUriRefused`.
    """
    if not path.startswith("/"):
        raise DataUriRefused(f"local path {path!r} is not absolute")
    normal = os.path.realpath(path) if resolve_links else posixpath.normpath(path)
    for prefix in policy.local_path_prefixes:
        base = os.path.realpath(prefix) if resolve_links else posixpath.normpath(prefix)
        if normal == base or normal.startswith(base.rstrip("/") + "/"):
            return normal
    allowed = ", ".join(policy.local_path_prefixes) or "none"
    raise DataUriRefused(f"local path {normal!r} is outside the allowed data folders ({allowed})")


def first_refusal(fields: dict[str, str | None], policy: DataUriPolicy) -> tuple[str, str] | None:
    """``(field, reason)`` of the first URI in ``fields`` (spec field path → URI, None = unset) the
    policy refuses statically (:func:`classify`), else None. What the reconcilers report as
    ``InvalidSpec`` before creating any Job."""
    for field, uri in fields.items():
        if uri is None:
            continue
        try:
            classify(uri, policy)
        except DataUriRefused as exc:
            return field, str(exc)
    return None
