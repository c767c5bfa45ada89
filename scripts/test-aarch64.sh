#!/usr/bin/env bash
# The kernels on aarch64: cross-built and run under qemu-user, so the NEON path and the scalar
# path are tested on every CI run without an ARM machine; then one end-to-end test (the default
# model's greedy tokens against llama.cpp's) on the NEON path.
#
# rustup's toolchain here has no aarch64 standard library and cannot fetch one, so the target
# build uses Debian's own Rust (package rustc-web, bookworm-security, with the arm64 standard
# library libstd-rust-web-dev:arm64); cargo stays rustup's. The linker is Debian's
# gcc-aarch64-linux-gnu; binaries run under qemu-user (Debian bookworm) against the arm64 C
# library from Debian's multiarch (`qemu-aarch64` with no `-L`: the cross C library under
# /usr/aarch64-linux-gnu hangs threaded programs under qemu 7.2 and 10.0, seen 2026-12-05).
# qemu's default CPU model ("max") has every optional extension, dotprod included.
#
# Installs what is missing through apt-get (needs root); CAMELID_AARCH64_RUSTC and
# CAMELID_AARCH64_RUSTDOC point at another aarch64-capable rustc and rustdoc. Arguments go to
# the kernels' `cargo test` (a test filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."

rustc_arm=${CAMELID_AARCH64_RUSTC:-/usr/bin/rustc}
missing=()
sysroot=$("$rustc_arm" --print sysroot 2> /dev/null || true)
[[ -n $sysroot && -d $sysroot/lib/rustlib/aarch64-unknown-linux-gnu ]] ||
    missing+=(rustc-web libstd-rust-web-dev:arm64)
command -v aarch64-linux-gnu-gcc > /dev/null || missing+=(gcc-aarch64-linux-gnu)
# The C library to link against (only a recommendation of the cross compiler's package).
[[ -e /usr/aarch64-linux-gnu/lib/crt1.o ]] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 > /dev/null || missing+=(qemu-user)
[[ -e /lib/ld-linux-aarch64.so.1 ]] || missing+=(libc6:arm64)
if ((${#missing[@]})); then
    echo "test-aarch64: installing ${missing[*]}" >&2
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi

export RUSTC=$rustc_arm RUSTDOC=${CAMELID_AARCH64_RUSTDOC:-/usr/bin/rustdoc}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export RUSTFLAGS="-D warnings"
# The dev profile without debug info: the workspace builds the kernels at opt-level 3 and the
# model at 2 there, so the tests run under qemu as fast as release ones (the kernels' in 1 min
# 53 s against 1 min 55 s, 20 s a prompt against 19 s) and build in half the time (2 min 30 s
# against 4 min 43 s, two cores).
export CARGO_PROFILE_DEV_DEBUG=false
cross=(--target aarch64-unknown-linux-gnu --target-dir target/aarch64)
cargo test "${cross[@]}" -p camelid-kernels --lib --test kernels "$@"
# End to end on the NEON path: the default model's greedy tokens against llama.cpp's
# (testdata/smollm2/greedy.json; the model from scripts/fetch-assets.sh), for three of its
# prompts (each takes about 20 s under qemu).
CAMELID_GREEDY_PROMPTS=3 cargo test "${cross[@]}" -p camelid-engine --test generate -- \
    greedy_equals_llama_cpp_for_32_tokens
