#!/usr/bin/env bash
# Builds the container image (hack/build-image.sh, buildah) and proves it runs as the chart
# runs it: as UID/GID 65532 on a read-only root file system with a writable /tmp, for
# `siembridge --version`, `siembridge operator --help` and the quickstart replay.
# Prints the image size, which must stay under 60 MB. Ends with "image: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0; failed=0
ok() { echo "ok: $*"; passed=$((passed+1)); }
ko() { echo "FAILED: $*"; failed=$((failed+1)); }
finish() { echo "image: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

if ! command -v buildah >/dev/null; then
    if [ "${CI:-}" = true ]; then ko "buildah is not installed"; finish; fi
    echo "skipped: buildah is not installed (apt-get install buildah)"; exit 0
fi
export BUILDAH_OPTS="--storage-driver vfs"
image=$(IMAGE=localhost/siembridge-test:ci hack/build-image.sh | tail -1) || { ko "image build"; finish; }
ok "image built: $image"

# The image is one layer: the prepared root file system plus the binary.
bytes=$(du -sb target/image/rootfs target/image/siembridge | awk '{s+=$1} END {print s}')
echo "buildah images: $(buildah --storage-driver vfs images --noheading --format '{{.Name}}:{{.Tag}} {{.Size}}' "$image")"
mb=$(( (bytes + 999999) / 1000000 ))
echo "image size: $bytes bytes (~$mb MB uncompressed)"
if [ "$bytes" -lt 60000000 ]; then ok "image under 60 MB"; else ko "image is $mb MB, over 60 MB"; fi

labels=$(buildah --storage-driver vfs inspect --type image --format '{{.OCIv1.Config.Labels}}' "$image")
for l in source version revision licenses; do
    if echo "$labels" | grep -q "org.opencontainers.image.$l"; then ok "label $l"; else ko "label $l missing: $labels"; fi
done
user=$(buildah --storage-driver vfs inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
[ "$user" = "65532:65532" ] && ok "user $user" || ko "image user is '$user'"

# Run inside the image's root file system, mounted read-only, as 65532, with a tmpfs /tmp
# (what the chart's pods get: readOnlyRootFilesystem plus an emptyDir).
ctr=$(buildah --storage-driver vfs from "$image")
mnt=$(buildah --storage-driver vfs mount "$ctr")
cleanup() { buildah --storage-driver vfs umount "$ctr" >/dev/null 2>&1; buildah --storage-driver vfs rm "$ctr" >/dev/null 2>&1; buildah --storage-driver vfs rmi "$image" >/dev/null 2>&1; }
trap cleanup EXIT
mkdir -p "$mnt/usr/share/siembridge"
rm -rf "$mnt/usr/share/siembridge/quickstart"
cp -r examples/quickstart "$mnt/usr/share/siembridge/quickstart"
# /usr/bin/env is not in the image: run the binary directly with chroot's own environment.
inside() {
    unshare --mount --fork sh -c '
        set -e
        mnt=$1; shift
        mkdir -p "$mnt/proc"
        mount --bind "$mnt" "$mnt"
        mount -o remount,bind,ro "$mnt"
        mount -t tmpfs -o mode=1777 tmpfs "$mnt/tmp"
        mount -t proc proc "$mnt/proc" 2>/dev/null || true
        cd "$mnt"
        HOME=/home/nonroot SIEMBRIDGE_STATE_DIR=/tmp/siembridge exec chroot --userspec=65532:65532 "$mnt" "$@"
    ' inside "$mnt" "$@"
}
if out=$(inside /usr/local/bin/siembridge --version 2>&1); then ok "siembridge --version: $out"; else ko "--version: $out"; fi
if out=$(inside /usr/local/bin/siembridge operator --help 2>&1) && echo "$out" | grep -q -- "--"; then
    ok "siembridge operator --help"; else ko "operator --help: $out"; fi
if out=$(inside /usr/local/bin/siembridge run -f /usr/share/siembridge/quickstart 2>/tmp/image-run.err); then
    n=$(echo "$out" | grep -c '^{')
    if [ "$n" -gt 0 ]; then ok "quickstart delivered $n events to stdout"; else ko "quickstart printed no event"; fi
else
    ko "quickstart run failed: $(tail -5 /tmp/image-run.err)"
fi
if inside /usr/local/bin/siembridge crdgen --out /usr/share/siembridge/x >/dev/null 2>&1; then
    ko "root file system is writable"; else ok "root file system is read-only"; fi
finish
