#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# evloop-prof's dispatch overhead: runs bench/evp-bench (a million bottom halves and a
# million timers on the core's main loop, without the module, with an empty observer,
# with the module) and writes the evloop-prof section of docs/benchmarks.md.
import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def run(binary, n, rounds, spec):
    out = subprocess.run([binary, str(n), str(rounds), spec], capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        sys.exit("bench: %s failed: %s" % (binary, out.stderr.strip()))
    return json.loads(out.stdout)


def table(results):
    rows = ["| load | module options | without (ns/dispatch) | empty observer | with evloop-prof"
            " | overhead (ns) | ratio | of which the core's hooks (ns) | min: without / with"
            " | min ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for spec, r in results:
        for kind, label in (("bh", "bottom half (1 loop iteration each)"),
                            ("timer", "timer (re-armed due: 1 loop iteration each)")):
            k = r[kind]
            opts = spec.split(",", 1)[1] if "," in spec else "defaults (sample=16)"
            rows.append("| %s | %s | %.1f | %.1f | %.1f | %+.1f | %.3f | %+.1f | %.1f / %.1f | %.3f |"
                        % (label, opts, k["base_ns"], k["nop_observer_ns"], k["prof_ns"],
                           k["overhead_ns"], k["ratio"], k["nop_observer_ns"] - k["base_ns"],
                           k["base_min_ns"], k["prof_min_ns"],
                           k["prof_min_ns"] / k["base_min_ns"]))
    return "\n".join(rows)


def write_section(path, text):
    begin, end = "<!-- BEGIN evloop-prof -->", "<!-- END evloop-prof -->"
    with open(path) as f:
        doc = f.read()
    a, b = doc.find(begin), doc.find(end)
    if a < 0 or b < a:
        sys.exit("bench: %s has no %s ... %s markers" % (path, begin, end))
    doc = doc[:a + len(begin)] + "\n" + text + "\n" + doc[b:]
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("build", nargs="?", default=os.path.join(SRC, "build"))
    # many short rounds: on a loaded host a short round more often runs undisturbed
    ap.add_argument("-n", "--dispatches", type=int, default=200000)
    ap.add_argument("-r", "--rounds", type=int, default=41)
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    binary = os.path.join(a.build, "modules", "evloop-prof", "bench", "evp-bench")
    if not os.access(binary, os.X_OK):
        sys.exit("bench: no %s (build first)" % binary)
    results = [(spec, run(binary, a.dispatches, a.rounds, spec))
               for spec in ("evloop-prof", "evloop-prof,sample=1")]
    cmd = "modules/evloop-prof/bench/bench_evloop_prof.py %s -n %d -r %d" % (
        a.build, a.dispatches, a.rounds)
    text = "\n".join([
        "Command: `%s` (%s, %d CPUs, shared host, load average %.1f at the end)." % (
            cmd, platform.machine(), os.cpu_count(), os.getloadavg()[0]),
        "",
        "%d dispatches per run, medians of %d alternating rounds of **thread CPU time** per "
        "dispatch (wall time on this shared host mostly measures the other tenants); the "
        "peer is the same core without the module in the same process and run. \"Empty "
        "observer\" is an observer whose callbacks do nothing: the core's own hook cost. "
        "The min columns are the least-disturbed rounds; with the host's load swinging "
        "during a run, medians move by tens of ns between runs while the mins stay within a "
        "few ns, so the min ratio is the estimate of the module's own cost." % (
            a.dispatches, a.rounds),
        "",
        table(results),
        "",
        "Reading: a bottom-half iteration makes no poll (GLib skips it when only a "
        "higher-priority source is ready), so each dispatch calls two observer hooks "
        "(dispatch begin and end), each an indirect call from the core into the observer "
        "(~1.7 ns per call and return on this VM) inside the core's per-thread section; the "
        "\"empty observer\" column is that floor, paid by any observer, and it alone is "
        "already above 2% of a ~150 ns dispatch. With default "
        "sampling the module reads the clock for one cheap dispatch in 16 (and for every "
        "dispatch of a source that averages 10 us or more); otherwise it finds its row "
        "(thread-local block, id-indexed array), counts, and publishes the current source "
        "with one store. `sample=1` times every dispatch (two TSC reads, ~12 ns each on this "
        "VM). A timer re-armed as due from its callback runs at the next iteration, after a "
        "poll (a syscall, most of the ~1 us per timer dispatch here), which also calls the "
        "poll hooks: four hooks per timer dispatch.",
        "",
        "Target (issue 6): under 2% for bottom halves. Not reached: the floor is the two "
        "calls into any observer per dispatch (a tight loop of begin+end hooks costs 6.8 ns "
        "with an empty observer against 1.0 ns without, and 13.9 ns with evloop-prof), "
        "i.e. ~4% of a ~150 ns dispatch for an observer that does nothing. Going below "
        "needs a cheaper observer interface (e.g. one call per iteration with batched "
        "counts), which is a change to the public module API.",
    ])
    print(text)
    if not a.no_write:
        write_section(os.path.join(SRC, "docs", "benchmarks.md"), text)


if __name__ == "__main__":
    main()
