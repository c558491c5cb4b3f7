#!/usr/bin/env bash
# Build the siembridge container image without any registry: a root file system made from
# Debian packages (apt-get download + dpkg -x, as distroless images are made), the stripped
# release binary, and `FROM scratch` (see Containerfile).
#
#   hack/build-image.sh                      # builds ghcr.io/siembridge/siembridge:<version>
#   IMAGE=registry.example.com/sec/siembridge:0.1.0 hack/build-image.sh
#   SIEMBRIDGE_BINARY=path/to/siembridge hack/build-image.sh   # use an already built binary
#   ENGINE=docker hack/build-image.sh        # docker build instead of buildah
#
# Prints the image name on its last line. Needs: cargo (unless SIEMBRIDGE_BINARY), apt-get and
# dpkg (Debian or Ubuntu), binutils' strip, and buildah (default) or docker.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image=${IMAGE:-ghcr.io/siembridge/siembridge:$version}
engine=${ENGINE:-buildah}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
ctx=${IMAGE_CONTEXT:-target/image}

binary=${SIEMBRIDGE_BINARY:-}
if [ -z "$binary" ]; then
    echo "== cargo build --release" >&2
    cargo build --release --locked --bin siembridge >&2
    binary=target/release/siembridge
fi

rm -rf "$ctx"
mkdir -p "$ctx/debs" "$ctx/rootfs"
# The binary links only against glibc (libc, libm, the loader) and libgcc_s (unwinding);
# TLS is rustls, so no OpenSSL.
pkgs=(libc6 libgcc-s1 ca-certificates tzdata)
echo "== apt-get download ${pkgs[*]}" >&2
if ! (cd "$ctx/debs" && apt-get -o APT::Sandbox::User=root download "${pkgs[@]}" >&2); then
    apt-get update -qq >&2
    (cd "$ctx/debs" && apt-get -o APT::Sandbox::User=root download "${pkgs[@]}" >&2)
fi
for deb in "$ctx"/debs/*.deb; do
    dpkg -x "$deb" "$ctx/rootfs"
done
root="$ctx/rootfs"
# Debian 12 packages install under /lib; the merged-/usr layout links it (as base-files does).
for d in lib lib64; do
    if [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then
        mkdir -p "$root/usr/$d"
        cp -a "$root/$d/." "$root/usr/$d/"
        rm -rf "${root:?}/$d"
    fi
    [ -e "$root/usr/$d" ] && ln -s "usr/$d" "$root/$d"
done
# What a static service does not need: docs, locales, charset converters, maintainer scripts' tools.
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/usr/share/lintian" \
    "$root/usr/share/info" "$root/usr/lib/x86_64-linux-gnu/gconv" "$root/usr/sbin" "$root/usr/bin" \
    "$root/etc/ca-certificates.conf" "$root/usr/share/zoneinfo/right" "$root/usr/share/zoneinfo/posix" \
    "$root/usr/lib/x86_64-linux-gnu/audit" "$root/usr/libexec"
# ca-certificates builds its bundle in a maintainer script, which dpkg -x does not run.
mkdir -p "$root/etc/ssl/certs"
cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root/usr/share/ca-certificates"
ln -sf /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
mkdir -p "$root/tmp" "$root/home/nonroot"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/nonroot"

strip --strip-all -o "$ctx/siembridge" "$binary"
chmod 0755 "$ctx/siembridge"
cp Containerfile "$ctx/Containerfile"

args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" -f "$ctx/Containerfile" -t "$image" "$ctx")
echo "== $engine build $image" >&2
case "$engine" in
    buildah) buildah ${BUILDAH_OPTS:---storage-driver vfs} build --isolation chroot --layers=false "${args[@]}" >&2 ;;
    docker) docker build "${args[@]}" >&2 ;;
    *) echo "ENGINE must be buildah or docker" >&2; exit 2 ;;
esac
echo "$image"
