#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Stops a fuzzing engine (SIGINT, which both engines take as "stop and report") once its
# process tree has used SECONDS of CPU: on a shared machine a campaign's length is the
# CPU it got, not its wall time.
#
#   cpu-budget.sh PID SECONDS
#
# The tree's CPU is the sum, over PID and every live descendant, of its own time plus the
# time of the children it has reaped (AFL++'s fork servers reap the target's processes).
set -u
pid=${1:?usage: cpu-budget.sh PID SECONDS}
budget=${2:?usage: cpu-budget.sh PID SECONDS}
hz=$(getconf CLK_TCK)

tree_cpu() {   # CPU seconds of $pid's tree, from /proc/*/stat
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$pid" -v hz="$hz" '
    { p = $1; sub(/^.*\) /, "")          # the command name may hold spaces: cut at ")"
      parent[p] = $2; t[p] = $12 + $13 + $14 + $15 }
    END { for (p in t) { q = p
            while (q != "" && q != root && q > 1) q = parent[q]
            if (q == root) sum += t[p] }
          printf "%d", sum / hz }'
}

while kill -0 "$pid" 2>/dev/null; do
  if [ "$(tree_cpu)" -ge "$budget" ]; then
    kill -INT "$pid" 2>/dev/null
    exit 0
  fi
  sleep 5
done
