#!/bin/sh
# Keeps the sealnet agent running inside its container: usage `supervise.sh AGENT [ARGS...]`.
#
# PID 1 is tini (`tini --`): it reaps processes orphaned by an agent crash (wireguard-go, which
# the agent starts detached in its own session) and forwards SIGTERM to this script, which passes
# it on to the agent (and to nothing else: wireguard-go must not get it). This
# loop restarts a crashed agent in the same container, so the container (and with it the
# wireguard-go daemon and the tunnel it carries) lives on; a new agent adopts the running tunnel.
# Without the loop the container would exit with the agent, and the kernel would kill wireguard-go
# with the rest of the container's PID namespace. Kernel WireGuard has no process and survives
# either way.
#
# Exit status 2 is a configuration error: restarting cannot fix it, so the container exits and
# kubelet reports CrashLoopBackOff. SIGTERM/SIGINT end the loop after the agent exited.
set -u
stopping=0
pid=
trap 'stopping=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' TERM INT
delay=1
while :; do
  started=$(date +%s)
  "$@" &
  pid=$!
  while :; do
    wait "$pid"
    code=$?
    # A trapped signal interrupts `wait` while the agent still runs: wait again for its real exit.
    kill -0 "$pid" 2>/dev/null || break
  done
  if [ "$stopping" = 1 ]; then exit "$code"; fi
  if [ "$code" = 2 ]; then
    echo "supervise: sealnet-agent exited with 2 (configuration error); not restarting" >&2
    exit 2
  fi
  # Back off (1, 2, 4 ... 30 s) while the agent keeps dying quickly; reset after 60 s of uptime.
  if [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
  echo "supervise: sealnet-agent exited with $code; restarting in $delay s (tunnels stay up)" >&2
  sleep "$delay" &
  pid=$!
  wait "$pid" || true
  pid=
  if [ "$stopping" = 1 ]; then exit "$code"; fi
  delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
