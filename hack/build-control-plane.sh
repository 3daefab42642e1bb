#!/usr/bin/env bash
# Builds the local control plane from upstream Go modules and caches the binaries by version.
#
#   hack/build-control-plane.sh            build if the cache misses, print the bin directory
#   hack/build-control-plane.sh --force    rebuild from scratch even on a cache hit
#
# Binaries: kube-apiserver, kubectl, etcd (hack/controlplane) and helm (hack/helm).
# Cache key: the Go toolchain version, this script (flags) and the go.mod/go.sum of both modules,
# so a version bump in either go.mod or a flag change is a cache miss. Cache root: $FLIGHTDECK_BIN_CACHE, default
# ~/.cache/flightdeck-operator/bin. The last line printed on stdout is the bin directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
force=0
[[ "${1:-}" == "--force" ]] && force=1

log() { echo "[build-control-plane] $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  log "go is not installed; installing Debian's golang-go"
  apt-get update -qq && apt-get install -y -qq golang-go >&2
fi

kube_version=$(awk '$1=="k8s.io/kubernetes" {print $2}' "$here/controlplane/go.mod")
helm_version=$(awk '$1=="require" && $2=="helm.sh/helm/v3" {print $3}' "$here/helm/go.mod")
key=$( { go version; cat "${BASH_SOURCE[0]}" "$here/controlplane/go.mod" "$here/controlplane/go.sum" \
          "$here/helm/go.mod" "$here/helm/go.sum"; } | sha256sum | cut -c1-12)
cache_root=${FLIGHTDECK_BIN_CACHE:-$HOME/.cache/flightdeck-operator/bin}
bin_dir="$cache_root/kube-$kube_version-helm-$helm_version-$key"
binaries=(kube-apiserver kubectl etcd helm)

complete() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
}

if [[ $force -eq 0 ]] && complete; then
  log "cache hit: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$cache_root"
staging=$(mktemp -d "$cache_root/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
start=$(date +%s)

# Versions are stamped the way upstream's build does, so `kubectl version` and helm's
# .Capabilities.KubeVersion report the real release instead of v0.0.0-master.
minor=$(echo "$kube_version" | cut -d. -f2)
kube_ldflags="-s -w \
  -X k8s.io/component-base/version.gitVersion=$kube_version \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/client-go/pkg/version.gitVersion=$kube_version \
  -X k8s.io/client-go/pkg/version.gitMajor=1 \
  -X k8s.io/client-go/pkg/version.gitMinor=$minor"

# -buildvcs=false: the binaries are versioned by their modules, not by this repository's commit, and
# a tarball or a checkout git refuses to read must build the same.
log "building kube-apiserver, kubectl, etcd ($kube_version) into $staging"
(cd "$here/controlplane" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$kube_ldflags" -o "$staging/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3)
mv "$staging/server" "$staging/etcd"   # go names the binary after the path element before /v3

# helm's default .Capabilities.KubeVersion (for `helm template` and lint) is stamped like upstream's
# Makefile does, from the k8s.io/client-go version helm is built with.
helm_kube_minor=$(cd "$here/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
log "building helm ($helm_version, default Kubernetes 1.$helm_kube_minor)"
(cd "$here/helm" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_kube_minor \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_kube_minor" \
  -o "$staging/helm" helm.sh/helm/v3/cmd/helm)

rm -rf "$bin_dir"
chmod 755 "$staging"
mv "$staging" "$bin_dir"
trap - EXIT
log "built in $(( $(date +%s) - start ))s: $bin_dir"
echo "$bin_dir"
