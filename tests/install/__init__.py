"""Tests of the install surface: images, Helm chart, kustomize manifests, RBAC, observability, GitOps."""
