"""Local development and test infrastructure: a real control plane (etcd and kube-apiserver on
loopback), the operator and the sidecar as real child processes, a throwaway PostgreSQL, and the
demo that runs on them.

May import: the rooms below the CLI (it starts them as processes; the webhook's paths are shared).
"""
