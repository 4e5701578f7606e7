"""The modelops runtime image: ``modelops-runtime train|serve|drift``. Never imports kopf."""
