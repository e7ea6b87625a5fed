#!/usr/bin/env bash
# Regression check of the library's TLS model (shim-c/README.md, "TLS model"): run by
# run-c-tests.sh, so by CI.
#
#   shim-c/tests/check-tls-model.sh [path/to/libgomalloc.so]
#
# 1. The library has the STATIC_TLS dynamic flag (`readelf -d`): its thread slot is
#    initial-exec TLS (alloc-core/src/tls.rs with the `initial-exec-tls` feature).
# 2. No function reachable from `malloc`, `free`, `calloc` or `realloc` calls
#    `__tls_get_addr`: the exported bodies and every function of the library they call,
#    directly or through a GOT slot, transitively (`objdump -d`, GOT slots resolved with
#    `readelf -r`). The walk does not enter core's panic entry points (`core::panicking::*`):
#    from there std's panic hook uses its own `thread_local!` state (the 9 `__tls_get_addr`
#    sites README's table counts), and a panic inside malloc is already a bug of its own
#    (HACKING.md, rule 2). Calls through a register cannot be followed.
# Exits non-zero and says why on failure. Needs binutils and python3.
set -u
so=${1:-${GOMALLOC_SO:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/libgomalloc.so}}
[ -f "$so" ] || { echo "check-tls-model: $so does not exist"; exit 1; }

status=0
if readelf -dW "$so" | grep -E '\(FLAGS\)' | grep -qw STATIC_TLS; then
    echo "ok: $so has the STATIC_TLS flag"
else
    echo "FAIL: $so lacks the STATIC_TLS flag (readelf -d): its TLS is not initial-exec"
    readelf -dW "$so" | grep FLAGS
    status=1
fi

python3 - "$so" malloc free calloc realloc <<'PY'
import re, subprocess, sys

so, roots = sys.argv[1], sys.argv[2:]
def out(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

# Every function's instructions, by start address.
blocks, names, cur = {}, {}, None
for line in out("objdump", "-d", "--no-show-raw-insn", so).splitlines():
    m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
    if m:
        cur = int(m.group(1), 16)
        blocks[cur], names[cur] = [], m.group(2)
    elif cur is not None and line.strip():
        blocks[cur].append(line)
# GOT slots: an address inside the library (R_X86_64_RELATIVE) or a symbol's name.
got = {}
for line in out("readelf", "-rW", so).splitlines():
    f = line.split()
    if len(f) < 4 or not re.fullmatch(r"[0-9a-f]+", f[0]):
        continue
    if f[2] == "R_X86_64_RELATIVE":
        got[int(f[0], 16)] = int(f[3], 16)
    elif len(f) >= 5 and f[2].startswith("R_X86_64_"):
        got[int(f[0], 16)] = f[4]
exported = {}
for line in out("nm", "-D", "--defined-only", so).splitlines():
    f = line.split()
    if len(f) == 3:
        exported[f[2]] = int(f[0], 16)

bad, seen, pruned = [], set(), set()
todo = [(exported[r], r) for r in roots]
while todo:
    a, path = todo.pop()
    if a in seen or a not in blocks:
        continue
    seen.add(a)
    if "9panicking" in names[a] or "core..panicking" in names[a]:
        pruned.add(names[a])
        continue
    for ins in blocks[a]:
        target = None
        m = re.search(r"\s(?:call|jmp)\s+\*0x[0-9a-f]+\(%rip\)\s+# ([0-9a-f]+)", ins)
        if m:
            target = got.get(int(m.group(1), 16), "?")
        else:
            m = re.search(r"\s(?:call|jmp)\s+([0-9a-f]+) <([^>]*)>", ins)
            if m:
                t = int(m.group(1), 16)
                target = t if t in blocks else m.group(2)
        if target is None:
            continue
        if isinstance(target, int) and "__tls_get_addr" in names[target]:
            bad.append(path + " -> " + names[target])  # its PLT stub
        elif isinstance(target, int):
            if target != a:
                todo.append((target, path + " -> " + names[target]))
        elif "__tls_get_addr" in target:
            bad.append(path + " -> " + target)
print("%s: checked %d functions reachable from %s (not entered: %s)"
      % ("FAIL" if bad else "ok", len(seen) - len(pruned), ", ".join(roots),
         ", ".join(sorted(pruned)) or "none"))
for b in bad:
    print("FAIL: call to __tls_get_addr on a malloc path: " + b)
if len(seen) < len(roots):
    print("FAIL: some of %s not found in %s" % (", ".join(roots), so))
    sys.exit(1)
sys.exit(1 if bad else 0)
PY
[ $? -eq 0 ] || status=1
exit $status
