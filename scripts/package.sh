#!/usr/bin/env bash
# Builds the .deb and .rpm packages of hostd and the collector
# (packaging/README.md):
#
#   scripts/package.sh                      release build, all four packages in target/packages/
#   scripts/package.sh --out DIR            elsewhere
#   scripts/package.sh --package hostd      only hostd (or: --package hostd-collector)
#   scripts/package.sh --hostd-bin PATH --collector-bin PATH
#                                           package binaries built already (the tests
#                                           pass their debug builds) instead of building
#   scripts/package.sh --fast ...           faster .deb compression, larger files (tests)
#
# Needs cargo-deb and cargo-generate-rpm (scripts/setup.sh installs them),
# and binutils' strip. The binaries are stripped into a staging target
# directory that both tools then read as target/release/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=""
HOSTD_BIN=""
COLLECTOR_BIN=""
PACKAGES=()
DEB_FLAGS=()

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --package)
      case "$2" in
        hostd|hostd-collector) PACKAGES+=("$2") ;;
        *) echo "package.sh: --package: unknown package '$2' (hostd, hostd-collector)" >&2; exit 2 ;;
      esac
      shift 2 ;;
    --hostd-bin) HOSTD_BIN="$2"; shift 2 ;;
    --collector-bin) COLLECTOR_BIN="$2"; shift 2 ;;
    --fast) DEB_FLAGS+=(--fast); shift ;;
    -h|--help) usage ;;
    *) echo "package.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[ "${#PACKAGES[@]}" -gt 0 ] || PACKAGES=(hostd hostd-collector)

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-$TARGET/packages}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

for tool in deb generate-rpm; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "package.sh: cargo $tool is missing (run scripts/setup.sh)" >&2
    exit 1
  fi
done

want() { local p; for p in "${PACKAGES[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

# Release build of what is not given.
build=()
if want hostd && [ -z "$HOSTD_BIN" ]; then build+=(-p hostd --bin hostd); HOSTD_BIN="$TARGET/release/hostd"; fi
if want hostd-collector && [ -z "$COLLECTOR_BIN" ]; then build+=(-p collector --bin collector); COLLECTOR_BIN="$TARGET/release/collector"; fi
if [ "${#build[@]}" -gt 0 ]; then
  (cd "$ROOT" && cargo build --release "${build[@]}")
fi

# Staging target directory: stripped copies where both tools look for them.
STAGE="$(mktemp -d "$OUT/.stage.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/release"

package() { # crate-dir binary-name source-binary
  local dir="$1" name="$2" bin="$3"
  [ -x "$bin" ] || { echo "package.sh: $bin: no such executable" >&2; exit 1; }
  strip --strip-unneeded -o "$STAGE/release/$name" "$bin"
  (cd "$ROOT" && CARGO_TARGET_DIR="$STAGE" cargo deb --no-build --no-strip "${DEB_FLAGS[@]}" \
    --manifest-path "$dir/Cargo.toml" --output "$OUT/")
  # cargo-generate-rpm's --package opens <package>/Cargo.toml: the crate's directory.
  (cd "$ROOT" && cargo generate-rpm --package "$dir" --target-dir "$STAGE" --output "$OUT/")
}

if want hostd; then package hostd/hostd hostd "$HOSTD_BIN"; fi
if want hostd-collector; then package collector collector "$COLLECTOR_BIN"; fi

ls -1 "$OUT"/*.deb "$OUT"/*.rpm
