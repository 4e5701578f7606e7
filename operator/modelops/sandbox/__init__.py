"""Local sandbox: a Kubernetes API emulator (kmock), a local kubelet and an MLflow server."""
