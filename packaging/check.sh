#!/usr/bin/env bash
# Builds the packages and checks them: lintian and rpmlint without errors,
# exact file lists and dependencies, then installs the DEB (dpkg --root) and
# the el9 RPM (rpm --root) into throwaway roots, where the installed loader
# and module are loaded by the broker emulator (Lua 5.3 and 5.4) and send
# sample events to the mock Canopsis, and the installed monitoring plugin
# reads the status file they left, and the installed action service is run
# briefly against a mock Centreon (one click, then stopped; loopback only).
# Needs: binutils lintian rpm rpmlint (Debian), python3 with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=centreon-stream-connector-canopsis-native
plugin=centreon_canopsis_native_status
actions=centreon-canopsis-native-actions

missing=()
for cmd in objdump lintian rpm rpmlint dpkg-deb; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends binutils lintian rpm rpmlint >/dev/null
  else
    echo "missing: ${missing[*]}; install with: sudo apt-get install binutils lintian rpm rpmlint" >&2
    exit 1
  fi
fi

bash packaging/build.sh
deb=$(ls dist/*.deb)
el8=$(ls dist/*.el8.x86_64.rpm)
el9=$(ls dist/*.el9.x86_64.rpm)

echo "== lintian"
lintian --fail-on error --tag-display-limit 0 "$deb"
echo "== rpmlint"
rpmlint -c rpm/rpmlint.toml "$el8" "$el9"

fail() { echo "packaging check FAILED: $*" >&2; exit 1; }

# The installed monitoring plugin ($1) against the status file of the
# output the emulator ran (kept in $2, then removed), a missing file and
# a stale one: OK, UNKNOWN and CRITICAL, one line each.
check_plugin() {
  local bin=$1 kept=$2 out rc
  [ -x "$bin" ] || fail "$bin is not installed executable"
  [ -n "$kept" ] && [ -f "$kept/canopsis.status.json" ] || fail "no status file beside the emulator's log ($kept)"
  rc=0; out=$("$bin" --status-file "$kept/canopsis.status.json" --warning-oldest-unacked 300) || rc=$?
  echo "  $out"
  [ "$rc" -eq 0 ] && [[ $out == "OK: connector ok"*"|'unacked'=0;;;0; 'oldest_unacked'=0s;300;;0;"* ]] || fail "plugin on a healthy output: rc=$rc $out"
  rc=0; out=$("$bin" --status-file "$kept/missing.status.json") || rc=$?
  [ "$rc" -eq 3 ] && [[ $out == "UNKNOWN: cannot read status file $kept/missing.status.json"* ]] || fail "plugin on a missing file: rc=$rc $out"
  sed 's/"written":[0-9]*/"written":1/' "$kept/canopsis.status.json" > "$kept/stale.status.json"
  rc=0; out=$("$bin" --status-file "$kept/stale.status.json") || rc=$?
  [ "$rc" -eq 2 ] && [[ $out == "CRITICAL: status file not updated"* ]] || fail "plugin on a stale file: rc=$rc $out"
  rm -rf "$kept"
}
same() { # $1 what, $2 expected, $3 actual
  if [ "$2" != "$3" ]; then
    diff <(echo "$2") <(echo "$3") >&2 || true
    fail "$1"
  fi
}

echo "== contents"
deb_files=$(sort <<LIST
./etc/centreon-canopsis-native/actions.conf
./etc/logrotate.d/$pkg
./usr/lib/centreon/plugins/$plugin
./usr/lib/systemd/system/$actions.service
./usr/lib/x86_64-linux-gnu/lua/5.3/canopsis_native_53.so
./usr/share/centreon-broker/lua/canopsis-native-events-apiv2.lua
./usr/share/centreon-broker/lua/webhook-native-events.lua
./usr/share/doc/$pkg/README.md
./usr/share/doc/$pkg/changelog.Debian.gz
./usr/share/doc/$pkg/copyright
./usr/share/lintian/overrides/$pkg
./usr/sbin/$actions
LIST
)
same "DEB file list" "$deb_files" "$(dpkg-deb --contents "$deb" | awk '{print $6}' | grep -v '/$' | sort)"
for el in "el8 5.3 53" "el9 5.4 54"; do
  read -r dist lua tag <<<"$el"
  file=$(ls dist/*."$dist".x86_64.rpm)
  same "$dist RPM file list" "$(sort <<LIST
/etc/centreon-canopsis-native/actions.conf
/etc/logrotate.d/$pkg
/usr/lib/centreon/plugins/$plugin
/usr/lib/systemd/system/$actions.service
/usr/lib64/lua/$lua/canopsis_native_$tag.so
/usr/share/centreon-broker/lua/canopsis-native-events-apiv2.lua
/usr/share/centreon-broker/lua/webhook-native-events.lua
/usr/share/doc/$pkg/CHANGELOG.md
/usr/share/doc/$pkg/README.md
/usr/sbin/$actions
/usr/share/licenses/$pkg/LICENSE
LIST
)" "$(rpm -qlp "$file" | sort)"
  rpm -qp --qf '[%{FILENAMES} %{FILEMODES:perms} %{FILEFLAGS:fflags}\n]' "$file" | grep -qx "/etc/centreon-canopsis-native/actions.conf -rw-r----- cn" \
    || fail "$dist RPM: actions.conf is not 0640 %config(noreplace)"
  reqs=$(rpm -qpR "$file")
  grep -qx "lua >= $lua" <<<"$reqs" || fail "$dist RPM does not require lua >= $lua"
  grep -qi curl <<<"$reqs" && fail "$dist RPM depends on curl"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/centreon-canopsis-native/actions.conf \
  || fail "DEB: actions.conf is not a conffile"
deps=$(dpkg-deb -f "$deb" Depends)
grep -q 'lua5.3' <<<"$deps" || fail "DEB does not depend on lua5.3"
grep -qi curl <<<"$deps" && fail "DEB depends on curl"

echo "== emulator builds"
(cd tests/harness && cargo build -q --release --features lua53 && cargo build -q --release --features lua54 --target-dir target/lua54)

# The installed action service ($1) and its files: unit disabled (nothing
# enables it), config 0640; then one click against the mock Centreon.
check_actions() {
  local root=$1 unit
  unit="$root/usr/lib/systemd/system/$actions.service"
  grep -qx "ExecStart=/usr/sbin/$actions --config -" "$unit" || fail "$unit: ExecStart"
  [ -z "$(find "$root/etc" -path '*wants*' -name "$actions.service")" ] || fail "$actions enabled at install"
  [ "$(stat -c %a "$root/etc/centreon-canopsis-native/actions.conf")" = 640 ] || fail "actions.conf is not 0640"
  timeout 120 tests/harness/target/release/actions-check --service "$root/usr/sbin/$actions" || fail "action service from $root"
}

roots=$(mktemp -d)
trap 'rm -rf "$roots"' EXIT

echo "== DEB installed with dpkg --root, loaded by Lua 5.3"
root="$roots/deb"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# Dependencies (lua5.3, centreon-broker-core) are not in the empty root.
dpkg --root="$root" --log=/dev/null --force-depends -i "$deb" >/dev/null 2>&1 || fail "dpkg -i"
same "files present after install (nothing written besides the package's files)" "$deb_files" \
  "$(cd "$root" && find . -type f -not -path './var/lib/dpkg/*' | sort)"
emulated=$(LUA_CPATH_5_3="$root/usr/lib/x86_64-linux-gnu/lua/5.3/?.so;;" \
  tests/harness/target/release/broker-emulator --keep --script "$root/usr/share/centreon-broker/lua/canopsis-native-events-apiv2.lua") \
  || { echo "$emulated"; fail "broker emulator, DEB"; }
echo "$emulated"
echo "== monitoring plugin from the DEB"
check_plugin "$root/usr/lib/centreon/plugins/$plugin" "$(sed -n 's/^kept //p' <<<"$emulated")"
LUA_CPATH_5_3="$root/usr/lib/x86_64-linux-gnu/lua/5.3/?.so;;" \
  tests/harness/target/release/broker-emulator webhook --script "$root/usr/share/centreon-broker/lua/webhook-native-events.lua"

echo "== action service from the DEB"
check_actions "$root"

echo "== el9 RPM installed with rpm --root, loaded by Lua 5.4"
root="$roots/rpm"
mkdir -p "$root"
rpm --root "$root" --initdb
rpm --root "$root" -i --nodeps --noscripts --ignorearch "$el9" 2>/dev/null || fail "rpm -i"
emulated=$(LUA_CPATH_5_4="$root/usr/lib64/lua/5.4/?.so;;" \
  tests/harness/target/lua54/release/broker-emulator --keep --script "$root/usr/share/centreon-broker/lua/canopsis-native-events-apiv2.lua") \
  || { echo "$emulated"; fail "broker emulator, el9 RPM"; }
echo "$emulated"
echo "== monitoring plugin from the el9 RPM"
check_plugin "$root/usr/lib/centreon/plugins/$plugin" "$(sed -n 's/^kept //p' <<<"$emulated")"
LUA_CPATH_5_4="$root/usr/lib64/lua/5.4/?.so;;" \
  tests/harness/target/lua54/release/broker-emulator webhook ndjson --script "$root/usr/share/centreon-broker/lua/webhook-native-events.lua"
echo "== action service from the el9 RPM"
check_actions "$root"
echo "packaging check: ok"
