#!/usr/bin/env bash
# Builds the project's image here, where no container registry and no Docker engine are reachable:
#
#   1. a Debian root filesystem from Debian's own packages (mmdebstrap): the base image, with the
#      Python runtime and nothing else (no compiler, no pip);
#   2. imported into buildah's local storage as localhost/flightdeck-base:<key>;
#   3. the repository's Dockerfile built by buildah on that base (--build-arg PYTHON_IMAGE=...).
#
#   hack/build-image.sh            build what is missing, print the image reference (last line)
#   hack/build-image.sh --force    rebuild the image (the base stays cached)
#
# Caches, by content: the base's root filesystem tarball under $FLIGHTDECK_IMAGE_CACHE (default
# ~/.cache/flightdeck-operator/images), keyed by its recipe (suite, packages, mirror, this script's
# recipe block); the base image and the built image in buildah's storage, the latter keyed by the
# base and every file of the build context. mmdebstrap and buildah come from Debian (apt-get).
#
# Behind a TLS-inspecting proxy (pip's global.cert set on this host, or FLIGHTDECK_BUILD_CA_BUNDLE),
# the host's CA certificates are mounted into the build's RUN steps and passed to pip as PIP_CERT.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
force=0
[[ "${1:-}" == "--force" ]] && force=1
log() { echo "[build-image] $*" >&2; }

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    log "$1 is not installed; installing Debian's $2"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
  fi
}
need mmdebstrap mmdebstrap
need buildah buildah

# --- base recipe (part of the base's cache key) ---
suite=bookworm
# The runtime: python3 (3.11 on bookworm) and venv for the builder stage; certificates and time
# zones. No compiler, no pip (python3-venv brings pip only as a wheel for ensurepip).
packages=python3,python3-venv,ca-certificates,tzdata
mirror=${FLIGHTDECK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# --- end base recipe ---

cache=${FLIGHTDECK_IMAGE_CACHE:-$HOME/.cache/flightdeck-operator/images}
mkdir -p "$cache"
base_key=$( { echo "$suite $packages $mirror"; sed -n '/^# --- base recipe/,/^# --- end base recipe/p' "${BASH_SOURCE[0]}"; } \
  | sha256sum | cut -c1-12)
base_image=localhost/flightdeck-base:$suite-$base_key
base_tar=$cache/base-$suite-$base_key.tar

if ! buildah inspect --type image "$base_image" >/dev/null 2>&1; then
  if [[ ! -s $base_tar ]]; then
    log "building the base root filesystem ($suite: $packages) with mmdebstrap"
    mmdebstrap --variant=minbase --include="$packages" --aptopt='Acquire::Retries "3"' \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
      "$suite" "$base_tar.partial" "$mirror" >&2
    mv "$base_tar.partial" "$base_tar"
  fi
  log "importing $base_tar as $base_image"
  container=$(buildah from scratch)
  buildah add "$container" "$base_tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 "$container"
  buildah commit --quiet --rm "$container" "$base_image" >/dev/null
fi

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/operator/flightdeck_operator/__init__.py")
context_key=$( { echo "$base_image"; cd "$repo" && find Dockerfile .dockerignore pyproject.toml README.md operator \
  -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-12)
image=localhost/flightdeck-operator:$version-$context_key

if [[ $force -eq 1 ]] || ! buildah inspect --type image "$image" >/dev/null 2>&1; then
  ca_args=()
  ca_bundle=${FLIGHTDECK_BUILD_CA_BUNDLE:-${PIP_CERT:-$(sed -n 's/^cert *= *//p' /etc/pip.conf \
    "${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf" "$HOME/.pip/pip.conf" 2>/dev/null | tail -n 1)}}
  if [[ -n $ca_bundle && -r $ca_bundle ]]; then
    log "pip in the build trusts $ca_bundle (this host's TLS-inspecting proxy)"
    ca_args=(--volume "$ca_bundle:/etc/flightdeck-build-ca.pem:ro" --build-arg PIP_CERT=/etc/flightdeck-build-ca.pem)
  fi
  log "building $image from the Dockerfile on $base_image"
  buildah build --isolation chroot --network host --layers=false \
    --build-arg "PYTHON_IMAGE=$base_image" "${ca_args[@]}" \
    --tag "$image" --file "$repo/Dockerfile" "$repo" >&2
fi
echo "$image"
