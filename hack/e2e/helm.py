"""``helm install`` and ``helm uninstall`` through Helm's own Go library (helm-python-sdk, the
library the chart tests render with), for machines without a helm binary.

Only what hack/e2e/scenario.sh uses:

    python hack/e2e/helm.py install RELEASE CHART --namespace NS [--create-namespace]
        [--set key=value ...] [--wait] [--timeout 10m]
    python hack/e2e/helm.py uninstall RELEASE --namespace NS [--wait] [--timeout 5m]

The cluster is the one in $KUBECONFIG. Exits 1 with Helm's message when the action fails.
"""

from __future__ import annotations

import argparse
import os
import sys

import helm_python as helm


def seconds(duration: str) -> int:
    """``10m``, ``90s`` or ``1h`` as seconds (Helm's --timeout, whole units only)."""
    units = {"s": 1, "m": 60, "h": 3600}
    if duration[-1:] in units:
        return int(duration[:-1]) * units[duration[-1]]
    return int(duration)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hack/e2e/helm.py")
    sub = parser.add_subparsers(dest="action", required=True)
    install = sub.add_parser("install")
    install.add_argument("release")
    install.add_argument("chart")
    install.add_argument("--create-namespace", action="store_true")
    install.add_argument("--set", action="append", default=[], dest="sets")
    uninstall = sub.add_parser("uninstall")
    uninstall.add_argument("release")
    for action in (install, uninstall):
        action.add_argument("--namespace", required=True)
        action.add_argument("--wait", action="store_true")
        action.add_argument("--timeout", default="5m")
    args = parser.parse_args(argv)
    config = helm.Config(kubeconfig_path=os.environ.get("KUBECONFIG"), namespace=args.namespace)
    wait = "watcher" if args.wait else None
    try:
        if args.action == "install":
            values = helm.parse_set_string(",".join(args.sets)) if args.sets else {}
            release = config.install(args.chart, args.release, values, namespace=args.namespace,
                                     create_namespace=args.create_namespace, wait=wait,
                                     timeout=seconds(args.timeout))
        else:
            release = config.uninstall(args.release, wait=wait, timeout=seconds(args.timeout))
    except helm.HelmError as exc:
        print(f"helm {args.action} {args.release}: {exc}", file=sys.stderr)
        return 1
    print(f"helm {args.action} {args.release}: {getattr(release, 'status', 'done')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
