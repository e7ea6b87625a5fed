#!/usr/bin/env bash
# Real programs under LD_PRELOAD=libgomalloc.so (issue 3). Each workload runs twice in a
# fresh directory, once on glibc's malloc and once preloaded; stdout and the exit status
# must be identical (and the preloaded run must really have loaded the library). Prints
# `N passed, N failed` last and exits non-zero on any failure.
#
#   shim-c/tests/run-real-programs.sh [workload-name ...]
#
# Workloads: python (threads + multiprocessing.Pool), sqlite (300k rows), git (init,
# commit, gc, fsck), gcc (C and C++), perl (hash churn), sort (300k lines, parallel, temp
# files), xz (-T2 both ways), openssl (digest, AES, RSA), node (zlib, crypto, Map churn).
# Debian packages: python3 sqlite3 git gcc g++ perl coreutils xz-utils openssl nodejs
# A missing program fails its workload unless GOMALLOC_ALLOW_MISSING=1 (then it is skipped).
# Environment: GOMALLOC_SO=/path/libgomalloc.so skips the cargo build.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
me=run-real-programs
. "$here/find-library.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/gomalloc-real.XXXXXX")
trap 'rm -rf "$work"' EXIT
inputs=$work/inputs
mkdir -p "$inputs"
unset LD_PRELOAD

# ---- inputs, made once without the preload ----
make_inputs() {
    # 300k pseudo-random lines (~8 MB) for sort, xz and openssl.
    awk 'BEGIN { x = 12345; for (i = 0; i < 300000; i++) { x = (x * 1103515245 + 12345) % 2147483648;
         printf "%010d %s line-%d\n", x, (x % 7 == 0 ? "seven" : "other"), i } }' > "$inputs/lines.txt"
    # A C file with many functions and a C++ file with templates and STL.
    {
        echo '#include <stdio.h>'
        for i in $(seq 1 400); do
            echo "static long f$i(long x) { long s = 0; for (int k = 0; k < $i % 17 + 3; k++) s += (x ^ k) * $i; return s % 1000003; }"
        done
        echo 'int main(void) { long t = 0;'
        for i in $(seq 1 400); do echo "  t += f$i(t + $i);"; done
        echo '  printf("%ld\n", t); return 0; }'
    } > "$inputs/big.c"
    cat > "$inputs/prog.cpp" <<'CPP'
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>
struct alignas(64) Padded { long v[8]; };
int main() {
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 100000; i++) m[std::to_string(i % 5000)].push_back(i);
    std::unordered_map<long, std::string> u;
    for (long i = 0; i < 200000; i++) u[i * 2654435761 % 1000003] = std::string(i % 50, 'x');
    std::vector<std::unique_ptr<Padded>> pads;
    for (int i = 0; i < 10000; i++) { pads.emplace_back(new Padded{{i}}); if (reinterpret_cast<uintptr_t>(pads.back().get()) % 64) return 3; }
    long sum = 0;
    for (auto &kv : m) sum += std::accumulate(kv.second.begin(), kv.second.end(), 0L);
    std::cout << m.size() << " " << u.size() << " " << sum << " " << pads.size() << std::endl;
}
CPP
}

# ---- workloads: each runs in the current directory, prints deterministic output ----
w_python() {
    cat > work.py <<'PY'
import concurrent.futures, hashlib, json, multiprocessing, threading

def churn(seed):
    d = {}
    for i in range(50000):
        d[(seed * 7919 + i) % 100003] = [i] * (i % 7) + [str(i)]
    s = json.dumps(sorted(d.items())[:1000])
    return hashlib.sha256(s.encode()).hexdigest()

def square_sum(n):
    return sum(i * i for i in range(n)) + len(bytearray(n))

if __name__ == "__main__":
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as ex:
        print("threads", list(ex.map(churn, range(8))))
    results = []
    lock = threading.Lock()
    def t(i):
        v = churn(100 + i)
        with lock:
            results.append(v)
    ts = [threading.Thread(target=t, args=(i,)) for i in range(6)]
    for x in ts: x.start()
    for x in ts: x.join()
    print("raw threads", sorted(results))
    for method in ("fork", "spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(4) as pool:
            print(method, pool.map(square_sum, range(0, 400000, 20000)))
            print(method, pool.map(churn, range(4)))
PY
    python3 work.py
}
w_sqlite() {
    sqlite3 test.db <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, payload BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
INSERT INTO t(k, name, payload) SELECT (x * 7919) % 10007, 'name-' || x, zeroblob(x % 300) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(k), sum(length(payload)) FROM t;
SELECT k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 5;
UPDATE t SET name = upper(name) WHERE k % 3 = 0;
DELETE FROM t WHERE k % 5 = 0;
SELECT count(*), min(name), max(name) FROM t;
SELECT group_concat(id) FROM (SELECT id FROM t ORDER BY name DESC LIMIT 20);
VACUUM;
PRAGMA integrity_check;
SQL
}
w_git() {
    export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid
    export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z" GIT_CONFIG_NOSYSTEM=1 HOME=$PWD
    git init -q -b main repo && cd repo || return 1
    for c in 1 2 3 4 5; do
        for i in $(seq 1 200); do echo "file $i commit $c $(seq 1 $((i % 50)))" > "f$i.txt"; done
        mkdir -p "d$c" && cp f1*.txt "d$c/"
        git add -A && git commit -q -m "commit $c" || return 1
    done
    git log --format='%H %s'
    git gc -q --aggressive && git fsck --full --strict && git count-objects -v | grep -E '^(count|in-pack|packs)'
    git rev-parse HEAD^{tree}
}
w_gcc() {
    gcc -O2 -o big "$inputs/big.c" && ./big || return 1
    g++ -O2 -std=c++17 -o prog "$inputs/prog.cpp" && ./prog
}
w_perl() {
    # `keys %h` order (and so which keys get deleted) depends on perl's per-process hash
    # seed: fix it, or the output differs from run to run whatever the malloc.
    PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0 perl -e '
        my %h; my $x = 1;
        for my $i (1 .. 300_000) { $x = ($x * 1103515245 + 12345) % 2147483648; $h{"k$x"} = [$i, "v" x ($i % 20)]; }
        my $n = 0; for my $k (keys %h) { delete $h{$k} if $n++ % 2 }
        my @k = sort keys %h; my $s = 0; $s += $h{$_}[0] for @k;
        my @strs = map { join(",", 1 .. ($_ % 100)) } 1 .. 30000;
        print scalar(@k), " $s $k[0] $k[-1] ", length(join("", @strs)), "\n";'
}
w_sort() {
    sort -S 4M --parallel=2 -T . "$inputs/lines.txt" | sha256sum
    sort -k2,2 -k1,1nr -S 16M "$inputs/lines.txt" | sha256sum
    sort -u -t' ' -k2,2 "$inputs/lines.txt"
}
w_xz() {
    # Blocks smaller than the input, or -T2 would still compress in one thread.
    xz -T2 -6 --block-size=1MiB -c "$inputs/lines.txt" > lines.xz && sha256sum < lines.xz
    xz -T2 -d -c lines.xz | sha256sum
    xz -T2 -2 --block-size=512KiB -c "$inputs/lines.txt" | xz -T2 -d | cmp - "$inputs/lines.txt" && echo roundtrip ok
}
w_openssl() {
    openssl dgst -sha256 -r "$inputs/lines.txt" | cut -d' ' -f1
    openssl enc -aes-256-cbc -K 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
        -iv 0f0e0d0c0b0a09080706050403020100 -in "$inputs/lines.txt" | openssl dgst -sha512 -r | cut -d' ' -f1
    openssl genrsa -out key.pem 2048 2>/dev/null && openssl rsa -in key.pem -check -noout
    openssl req -new -x509 -key key.pem -subj /CN=test -days 1 -out cert.pem && openssl verify -CAfile cert.pem cert.pem
    echo hello | openssl smime -sign -signer cert.pem -inkey key.pem -out msg.p7 && echo signed
    openssl ecparam -genkey -name prime256v1 -noout -out ec.pem && openssl ec -in ec.pem -check -noout 2>&1 | tail -1
}
w_node() {
    cat > work.js <<'JS'
const zlib = require('zlib'), crypto = require('crypto');
const big = Buffer.alloc(10 << 20);
for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761 >>> 24) & 0xff;
const z = zlib.deflateSync(big, { level: 6 });
console.log('deflate', z.length, zlib.inflateSync(z).equals(big));
console.log('gzip', zlib.gunzipSync(zlib.gzipSync(big)).equals(big), zlib.brotliCompressSync(big.subarray(0, 1 << 20)).length);
console.log('sha256', crypto.createHash('sha256').update(big).digest('hex'));
const m = new Map();
for (let i = 0; i < 300000; i++) m.set('k' + i, { i, s: 'x'.repeat(i % 30) });
for (let i = 0; i < 300000; i += 2) m.delete('k' + i);
let s = 0; for (const v of m.values()) s += v.i;
console.log('map', m.size, s);
const bufs = []; for (let i = 0; i < 20000; i++) bufs.push(Buffer.allocUnsafe(i % 9000).fill(i & 255));
console.log('buffers', Buffer.concat(bufs).length);
zlib.gzip(big, (err, out) => { console.log('async gzip', err, zlib.gunzipSync(out).length); });
JS
    node work.js
}

all="python sqlite git gcc perl sort xz openssl node"
declare -A needs=([python]=python3 [sqlite]=sqlite3 [git]=git [gcc]="gcc g++" [perl]=perl
                  [sort]=sort [xz]=xz [openssl]=openssl [node]=node)
declare -A package=([python3]=python3 [sqlite3]=sqlite3 [git]=git [gcc]=gcc [g++]=g++ [perl]=perl
                    [sort]=coreutils [xz]=xz-utils [openssl]=openssl [node]=nodejs)
selected=${*:-$all}

echo "== making inputs"
make_inputs || { echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0 skipped=0
for w in $selected; do
    missing=""
    pkgs=""
    for prog in ${needs[$w]:-}; do
        command -v "$prog" > /dev/null || { missing="$missing $prog"; pkgs="$pkgs ${package[$prog]}"; }
    done
    if [ -n "$missing" ]; then
        if [ "${GOMALLOC_ALLOW_MISSING:-0}" = 1 ]; then
            echo "skip $w: NOT TESTED, not installed:$missing (apt-get install$pkgs)"
            skipped=$((skipped + 1)); continue
        fi
        echo "FAIL $w (not installed:$missing; apt-get install$pkgs)"
        failed=$((failed + 1)); continue
    fi
    for mode in glibc gomalloc; do
        d=$work/$w.$mode
        mkdir -p "$d"
        start=$(date +%s.%N)
        if [ $mode = glibc ]; then
            (cd "$d" && timeout 900 bash -c "$(declare -f w_$w); inputs='$inputs'; w_$w") > "$d.out" 2> "$d.err"
        else
            (cd "$d" && timeout 900 env LD_PRELOAD="$so" bash -c "$(declare -f w_$w); inputs='$inputs'; w_$w") > "$d.out" 2> "$d.err"
        fi
        echo $? > "$d.rc"
        end=$(date +%s.%N)
        awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f\n", b - a }' > "$d.time"
    done
    a=$work/$w.glibc b=$work/$w.gomalloc
    problem=""
    [ "$(cat "$a.rc")" = 0 ] || problem="exit status $(cat "$a.rc") even without the preload"
    [ "$(cat "$a.rc")" = "$(cat "$b.rc")" ] || problem="exit status $(cat "$a.rc") without, $(cat "$b.rc") with the preload"
    cmp -s "$a.out" "$b.out" || problem="${problem:+$problem; }stdout differs"
    grep -q "cannot be preloaded" "$b.err" && problem="${problem:+$problem; }library not preloaded"
    grep -q "gomalloc:" "$b.err" && problem="${problem:+$problem; }gomalloc reported an error"
    if [ -z "$problem" ]; then
        printf 'ok   %-8s (%s lines of output; %ss on glibc, %ss preloaded)\n' "$w" "$(wc -l < "$a.out")" \
            "$(cat "$a.time")" "$(cat "$b.time")"
        passed=$((passed + 1))
    else
        echo "FAIL $w: $problem"
        diff "$a.out" "$b.out" | head -20 | sed 's/^/    /'
        echo "    -- stderr with the preload:"; tail -20 "$b.err" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done

# The preload must really be in effect: a process lists libgomalloc.so in its maps.
if env LD_PRELOAD="$so" cat /proc/self/maps | grep -q libgomalloc; then
    echo "ok   preload-active"; passed=$((passed + 1))
else
    echo "FAIL preload-active: libgomalloc.so is not mapped in a preloaded process"; failed=$((failed + 1))
fi

[ $skipped -gt 0 ] && echo "($skipped skipped)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
