#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
# evloop-prof's dispatch overhead: runs bench/evp-bench (bottom halves and timers on the
# core's main loop, without the module, with an empty observer, with an empty sampler,
# with the module; CPU time, and the core's instructions per dispatch under callgrind)
# and writes the evloop-prof section of docs/benchmarks.md.
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


def run(binary, n, rounds, spec):
    out = subprocess.run([binary, str(n), str(rounds), spec], capture_output=True,
                         text=True, timeout=3600)
    if out.returncode != 0:
        sys.exit("bench: %s failed: %s" % (binary, out.stderr.strip()))
    return json.loads(out.stdout)


def table(results):
    rows = ["| load | module options | without (ns/dispatch) | empty observer (ABI 1.1) "
            "| empty sampler (ABI 1.2) | with evloop-prof | overhead (ns) | median ratio "
            "| min: without / empty sampler / with | min ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for spec, r in results:
        for kind, label in (("bh", "bottom half (1 loop iteration each)"),
                            ("timer", "timer (re-armed due: 1 loop iteration each)")):
            k = r[kind]
            opts = spec.split(",", 1)[1] if "," in spec else "defaults (sample=256)"
            rows.append("| %s | %s | %.1f | %.1f | %.1f | %.1f | %+.1f | %.3f | %.1f / %.1f / %.1f | %.3f |"
                        % (label, opts, k["base_ns"], k["nop_observer_ns"], k["nop_sampler_ns"],
                           k["prof_ns"], k["overhead_ns"], k["ratio"],
                           k["base_min_ns"], k["nop_sampler_min_ns"], k["prof_min_ns"],
                           k["prof_min_ns"] / k["base_min_ns"]))
    return "\n".join(rows)


def instructions(binary, build):
    """Instructions per bottom-half dispatch under callgrind (base, empty observer, empty
    sampler): the difference of two run lengths, so start-up cancels out.  The module
    is left out: under valgrind every dispatch takes over 10 us, so it (rightly) times
    them all as slow."""
    if not shutil.which("valgrind"):
        return None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for what in ("base", "observer", "sampler"):
            ir = []
            for n in (50000, 100000):
                log = os.path.join(tmp, "vg.log")
                env = dict(os.environ, QS_EVP_BENCH_ONLY=what)
                subprocess.run(["valgrind", "--tool=callgrind", "--log-file=" + log,
                                "--callgrind-out-file=" + os.path.join(tmp, "cg.out"),
                                binary, str(n), "1"], env=env, check=True,
                               stdout=subprocess.DEVNULL, timeout=600)
                with open(log) as f:
                    txt = f.read()
                ir.append(int(txt.split("Collected :")[1].split()[0]))
            out[what] = (ir[1] - ir[0]) / 50000
    return out


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
               for spec in ("evloop-prof", "evloop-prof,sample=64", "evloop-prof,sample=1")]
    ins = instructions(binary, a.build)
    cmd = "modules/evloop-prof/bench/bench_evloop_prof.py %s -n %d -r %d" % (
        a.build, a.dispatches, a.rounds)
    bh = results[0][1]["bh"]
    min_ratio = bh["prof_min_ns"] / bh["base_min_ns"]
    smp_min_ratio = bh["nop_sampler_min_ns"] / bh["base_min_ns"]

    # the module's own cost per sampled dispatch (sample=1: every dispatch is one),
    # spread over the default period
    every = results[-1][1]["bh"]
    per_sample = every["prof_min_ns"] - every["nop_sampler_min_ns"]
    module_share = per_sample / 256 / bh["base_min_ns"]

    def verdict(ratio):
        return "under 2%" if ratio < 1.02 else "not under 2%"
    if ins:
        ins_text = (
            "Instructions per bottom-half dispatch under callgrind (exact, independent of the "
            "host's load): without %.0f, empty observer %.0f (%+.0f, %+.1f%%), empty sampler "
            "%.0f (%+.0f, %+.1f%%)." % (
                ins["base"], ins["observer"], ins["observer"] - ins["base"],
                100 * (ins["observer"] / ins["base"] - 1), ins["sampler"],
                ins["sampler"] - ins["base"], 100 * (ins["sampler"] / ins["base"] - 1)))
    else:
        ins_text = "(valgrind not installed: no instruction counts.)"
    text = "\n".join([
        "Command: `%s` (%s, %d CPUs, shared host, load average %.1f at the end)." % (
            cmd, platform.machine(), os.cpu_count(), os.getloadavg()[0]),
        "",
        "%d dispatches per run, medians of %d alternating rounds of **thread CPU time** per "
        "dispatch (wall time on this shared host mostly measures the other tenants); the "
        "peer is the same core without the module in the same process and run. \"Empty "
        "observer\" is an observer (the ABI 1.1 interface, called around every dispatch) "
        "whose callbacks do nothing; \"empty sampler\" is a sampler (ABI 1.2, what "
        "evloop-prof uses) with period 256 (the module's default) whose callbacks do nothing: the core's own cost "
        "for each interface. The min columns are the least-disturbed rounds; with the "
        "host's load swinging during a run, medians move by tens of ns between runs while "
        "the mins stay within a few ns, so the min ratio is the estimate of the module's "
        "own cost." % (a.dispatches, a.rounds),
        "",
        table(results),
        "",
        ins_text,
        "",
        "Reading: a bottom-half iteration makes no poll (GLib skips it when only a "
        "higher-priority source is ready), so the whole cost is at the dispatch. With the "
        "sampler interface the core, not the module, handles the unsampled dispatches: it "
        "counts down the source's sample countdown and publishes the loop's current source "
        "and sequence number (plain stores to memory its thread owns; no call into the "
        "module, no clock read, no atomic read-modify-write). One dispatch in 256 per source "
        "(the default `sample`) calls the module, which reads the clock twice (TSC, ~12 ns "
        "each on this VM) and updates its row. `sample=1` calls and times every dispatch. "
        "A timer re-armed as due from its callback runs at the next iteration, after a "
        "poll (a syscall, most of the ~1 us per timer dispatch here), which also calls the "
        "module's poll hooks (it counts every iteration and times 1 in 16 polls).",
        "",
        "Target (issue 6): under 2%% for bottom halves. With the default options: min ratio "
        "%.3f (%s), median ratio %.3f (%s); the empty sampler alone: min ratio %.3f. The "
        "medians on this shared 2-CPU host swing by more than the effect being measured "
        "(see the empty-sampler column against the instruction counts), so the min ratio "
        "and the instruction counts are the figures to trust." % (
            min_ratio, verdict(min_ratio), bh["ratio"], verdict(bh["ratio"]), smp_min_ratio),
    ])
    if ins:
        core_share = ins["sampler"] / ins["base"] - 1
        text += "\n\n" + (
            "Estimate from the stable figures: the core's sampler path costs %.1f%% of a "
            "bottom-half dispatch in instructions; a sampled dispatch costs the module "
            "%.0f ns (the sample=1 row: with evloop-prof minus the empty sampler, mins), "
            "%.2f%% of a dispatch once spread over 1 in 256; together about %.1f%% (%s)." % (
                100 * core_share, per_sample, 100 * module_share,
                100 * (core_share + module_share),
                verdict(1 + core_share + module_share)))
    print(text)
    if not a.no_write:
        write_section(os.path.join(SRC, "docs", "benchmarks.md"), text)


if __name__ == "__main__":
    main()
