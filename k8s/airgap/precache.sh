#!/usr/bin/env bash
# Pre-caches every image the site's manifests use, so that no pod ever needs
# a registry: a restart or an upgrade at an offline site must not wait on a
# pull (every container also says imagePullPolicy: IfNotPresent).
#
# The image list is derived from the rendered manifests of the overlays,
# never kept by hand:
#
#   k8s/airgap/precache.sh list [overlay…]            the images, one per line
#   k8s/airgap/precache.sh pull [overlay…]            on a connected K3s node: pull each
#                                                      into containerd (k3s crictl)
#   k8s/airgap/precache.sh export FILE [overlay…]     on a connected machine with docker:
#                                                      pull each and save one archive
#   k8s/airgap/precache.sh import FILE                on the offline node: put the archive
#                                                      where K3s imports images at start,
#                                                      and import it now if K3s runs
#
# Overlays default to every directory in k8s/overlays. The mesh's own image
# (edge-mesh/edge) is built from this repository's Dockerfile; `export`
# uses the local one when it exists and pulls the rest.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
overlays_dir="$here/../overlays"
images_dir=${K3S_IMAGES_DIR:-/var/lib/rancher/k3s/agent/images}

overlays() {
  if [ "$#" -gt 0 ]; then
    for o in "$@"; do echo "$overlays_dir/$o"; done
  else
    find "$overlays_dir" -mindepth 1 -maxdepth 1 -type d | sort
  fi
}

# Every container and init container image of the rendered overlays. In
# rendered manifests `image:` keys appear only in pod specs (kustomize
# prints them one per line, as `image: X` or `- image: X`).
list() {
  local dir
  for dir in $(overlays "$@"); do
    kubectl kustomize "$dir"
  done | sed -n -E 's/^[[:space:]]*(- )?image:[[:space:]]*"?([^"[:space:]]+)"?[[:space:]]*$/\2/p' | sort -u
}

cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,20p' "$0"; exit 64; }
shift
case "$cmd" in
  list)
    list "$@"
    ;;
  pull)
    for image in $(list "$@"); do
      echo "pulling $image"
      k3s crictl pull "$image"
    done
    ;;
  export)
    archive=${1:?export needs the archive file name}
    shift
    mapfile -t images < <(list "$@")
    for image in "${images[@]}"; do
      if docker image inspect "$image" >/dev/null 2>&1; then
        echo "using the local $image"
      else
        docker pull "$image"
      fi
    done
    docker save -o "$archive" "${images[@]}"
    echo "saved ${#images[@]} images to $archive"
    ;;
  import)
    archive=${1:?import needs the archive file}
    install -d -m 0755 "$images_dir"
    install -m 0644 "$archive" "$images_dir/$(basename "$archive")"
    echo "copied to $images_dir: K3s imports it at every start"
    if command -v k3s >/dev/null && k3s ctr version >/dev/null 2>&1; then
      k3s ctr images import "$archive"
    fi
    ;;
  *)
    echo "unknown command $cmd: expected list, pull, export or import" >&2
    exit 64
    ;;
esac
