#!/usr/bin/env bash
# The one test command: sets up what a fresh Debian machine lacks, then runs every
# test of the workspace. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# tmux drives the end-to-end editor tests (real terminal); sshd and ssh run the editor
# over SSH on 127.0.0.1.
command -v tmux >/dev/null || need_apt+=(tmux)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v chattr >/dev/null || need_apt+=(e2fsprogs)
# ip (iproute2) builds the network namespaces of the LAN (mDNS) test.
command -v ip >/dev/null || need_apt+=(iproute2)
# nft and conntrack make the NAT lab's routers (../shared/natlab): the NAT tests.
command -v nft >/dev/null || need_apt+=(nftables)
command -v conntrack >/dev/null || need_apt+=(conntrack)
# The lab's delay shim (nfq_delay.py: this kernel has no netem) takes packets from an
# iptables NFQUEUE rule through the NetfilterQueue module (from PyPI, built against
# libnetfilter-queue).
command -v iptables >/dev/null || need_apt+=(iptables)
python3 -c 'import netfilterqueue' 2>/dev/null || {
    [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || need_apt+=(libnetfilter-queue-dev)
    need_pip=1
}
# node and npm run tests/car/verify.mjs, which checks our CAR export with the
# JavaScript IPFS libraries, an implementation that shares no code with ours.
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# age (the reference tool's Go port, Debian's package) opens tandem's encrypted exports
# in tests/identity.rs, an implementation that shares no code with ours.
command -v age >/dev/null || need_apt+=(age)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    fi
fi
if [ "${need_pip:-0}" = 1 ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore NetfilterQueue==1.1.0 \
        || python3 -m pip install --quiet --disable-pip-version-check --user NetfilterQueue==1.1.0
fi
# The verifiers' packages exactly as locked (tests/car: the JS IPFS libraries that
# check our CAR export; tests/relay-js: js-libp2p's circuit relay, which tandem peers
# behind NATs must meet through): installed when missing, and again
# whenever the lock file is newer than the install.
for verifier in tests/car tests/relay-js; do
    if [ $verifier/package-lock.json -nt $verifier/node_modules/.package-lock.json ]; then
        npm ci --prefix $verifier --no-audit --no-fund --loglevel=error
    fi
done

if [ ! -d ../shared/traces ]; then
    echo "tests need the editing traces in ../shared/traces (beside this repository)" >&2
    exit 1
fi

cargo fmt --all -- --check
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the last of
# which is often an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
