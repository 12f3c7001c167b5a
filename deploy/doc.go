// Package deploy holds bastion's deployment files, not Go code: Kubernetes
// manifests (kubernetes/), a systemd unit (systemd/) and the IAM policy
// (iam/). Its tests check them: the manifests decode strictly into the
// Kubernetes API types and render with kustomize, the example config is a
// valid bastion config, the IAM policy allows exactly the AWS operations the
// code calls, and the unit file and the repository's Dockerfile keep their
// hardening.
package deploy
