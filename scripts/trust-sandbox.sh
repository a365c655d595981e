#!/bin/sh
# Runs a command inside the trust-store sandbox: a private mount namespace in which every system
# trust-store directory that exists on this machine is covered by a tmpfs holding a copy of its
# original contents. Whatever the command and its children write there (tproxy-helper installing
# its CA, update-ca-certificates rebuilding /etc/ssl/certs) stays in the sandbox and is gone when
# the last process in it exits; the host's trust store is never written. `ip netns exec` children
# get a copy of this mount namespace whose tmpfs mounts are the same filesystems, so the helper,
# curl and node clients in the namespaces all see one shared sandboxed store.
#
# It also gives the run a private /run/netns, so the run's network namespace names exist only
# in the sandbox (see the comment at the mount). It owns only the mount namespace: it must not touch
# networking, and it refuses to mount anything unless it has verified that it is in a new, private
# mount namespace.
#
# Two users share it: `tproxy-ui --demo` and the e2e suite. Both re-execute themselves through it
# with packages/client/src/demo/sandbox.ts (test/e2e/lib/sandbox.ts imports that module).
#
# Usage (root): scripts/trust-sandbox.sh COMMAND [ARG...]
# The command sees TPROXY_TRUST_SANDBOX=1 and TPROXY_SANDBOX_HOST_PID=<a pid in the original mount
# namespace>, whose /proc/<pid>/root shows the host's view (used to prove nothing leaked). Already
# inside a sandbox, it just execs the command.
set -eu

# Mount source names that mark our tmpfs mounts in /proc/self/mountinfo (demo/sandbox.ts checks them).
MARK=tproxy-sandbox-trust
NETNS_MARK=tproxy-sandbox-netns

# The trust-store table from mkcert's truststore_linux.go (anchor dirs) plus the generated outputs
# each distro's refresh command rewrites: Debian/Ubuntu, RHEL/Fedora, Arch, openSUSE.
TRUST_DIRS="/usr/local/share/ca-certificates /etc/ssl/certs /etc/pki/ca-trust /etc/ca-certificates /usr/share/pki/trust /var/lib/ca-certificates"

die() { echo "trust-sandbox.sh: $*" >&2; exit 125; }

in_sandbox() {
  [ "${TPROXY_TRUST_SANDBOX:-}" = 1 ] && grep -q " - tmpfs $MARK " /proc/self/mountinfo
}

if [ "${1:-}" = "--private-mount-ns" ]; then
  shift
  # unshare(1) exec'd us without forking, so our parent is whoever ran stage one: still in the
  # original mount namespace. Equal namespaces mean unshare did not happen; never mount then.
  self_ns=$(readlink /proc/self/ns/mnt)
  parent_ns=$(readlink "/proc/$PPID/ns/mnt")
  [ "$self_ns" != "$parent_ns" ] || die "not in a new mount namespace ($self_ns); refusing to mount"
  # The root mount must carry no "shared:N" tag, or our mounts would propagate to the host
  # (mount_namespaces(7), "Shared subtrees").
  if awk '$5 == "/" { for (i = 7; $i != "-"; i++) if ($i ~ /^shared:/) exit 1 }' /proc/self/mountinfo; then :; else
    die "root mount is still shared; refusing to mount"
  fi
  for dir in $TRUST_DIRS; do
    # Skip symlinked dirs (Fedora's /etc/ssl/certs -> /etc/pki/tls/certs): the target is either
    # covered by its own entry or not part of any refresh.
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    # cd first: after the tmpfs covers $dir, "." still names the original directory, so its
    # contents are copied without any staging directory on the host's disk.
    (cd "$dir" && mount -t tmpfs -o mode=0755,size=64m "$MARK" "$dir" && cp -a ./. "$dir/") ||
      die "could not sandbox $dir"
  done
  # Network namespace names live in this mount namespace only. Without this, `ip netns add`
  # would leave an empty placeholder file in the host's /run/netns for the whole run (the nsfs
  # bind mount itself stays private), which breaks `ip netns list` for everyone else on the
  # machine; and if this whole process tree is SIGKILLed, the kernel frees our namespaces with
  # the mount namespace instead of leaving names behind. `ip netns add` mkdirs it too (ip-netns(8)).
  mkdir -p /run/netns
  mount -t tmpfs -o mode=0755,size=1m "$NETNS_MARK" /run/netns || die "could not sandbox /run/netns"
  export TPROXY_TRUST_SANDBOX=1
  export TPROXY_SANDBOX_HOST_PID="$PPID"
  exec "$@"
fi

[ "$#" -gt 0 ] || die "usage: trust-sandbox.sh COMMAND [ARG...]"
if in_sandbox; then exec "$@"; fi
[ "$(id -u)" = 0 ] || die "needs root (mount namespaces and tmpfs mounts)"
exec unshare --mount --propagation private -- /bin/sh "$0" --private-mount-ns "$@"
