# SPDX-License-Identifier: GPL-2.0-or-later
# Turns `perf report --stdio --sort srcline` of a qemu-slim run into the share of CPU time
# per group of interpreter handlers (by the source line of interp.c each sample hit).
# usage: perf report ... --sort srcline | python3 perf-groups.py core/tcg/interp.c
import re
import sys

src = open(sys.argv[1]).read().split("\n")
groups = {}
total = 0.0
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+):(\d+)", line)
    if not m:
        continue
    pct, where, n = float(m.group(1)), m.group(2), int(m.group(3))
    total += pct
    text = src[n - 1] if where.endswith("interp.c") and n <= len(src) else ""
    if not text:
        g = "outside the interpreter"
    elif re.search(r"BIN\((ADDW|SUBW|MULW|SHLW|SRLW|SRAW)|ADD2|R\[ip->[dc]\] = R\[ip->[ab]\] \+",
                   text):
        g = "superinstructions (W ops, add2)"
    elif re.search(r"BIN\(|EXT32|MOVI|L_MOV", text):
        g = "integer ops and moves"
    elif re.search(r"CMP\(|GOTO_TB|L_BR", text):
        g = "branches and block exits"
    elif re.search(r"LD\(|LDGEN", text):
        g = "loads"
    elif re.search(r"ST\(|STGEN", text):
        g = "stores"
    elif re.search(r"jc|n->|EXIT_INDIRECT|cpu->pc = pc", text):
        g = "indirect jumps (jump cache)"
    else:
        g = "other interpreter lines"
    groups[g] = groups.get(g, 0.0) + pct
print(", ".join(f"{g} {p:.1f}%" for g, p in sorted(groups.items(), key=lambda x: -x[1])
                if p >= 0.5))
