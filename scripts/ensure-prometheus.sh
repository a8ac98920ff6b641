#!/usr/bin/env bash
# Makes Debian's `prometheus` and `promtool` available (docs/observability.md):
#   installed -> nothing to do
#   absent    -> apt-get install -y prometheus (without recommends), then stop
#                the service the package may have started (on 9090), leaving
#                any Prometheus that ran before alone
# Idempotent: run it as often as you like.
set -euo pipefail

log() { echo "ensure-prometheus: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else log "need root for: $*"; return 1
    fi
}

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
log "installing Debian's prometheus package"
before=" $(pgrep -x prometheus | tr '\n' ' ' || true) "
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
for pid in $(pgrep -x prometheus || true); do
    case "$before" in *" $pid "*) continue ;; esac
    log "stopping the prometheus service the package started (pid $pid)"
    as_root service prometheus stop >/dev/null 2>&1 || as_root kill "$pid" 2>/dev/null || true
done
command -v promtool >/dev/null 2>&1 || { log "promtool still missing after installing prometheus"; exit 1; }
