"""Progressive delivery: the rollout plan, the analysis of live traffic and the decision rules (pure,
no kopf), used by :mod:`modelops.reconcile.rollout`. See docs/rollout.md."""
