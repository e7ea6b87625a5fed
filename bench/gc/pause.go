// The pause benchmark in Go 1.19: the same program as gc/examples/pause.rs (see there).
// go run bench/gc/pause.go [LIVE_MIB [SECONDS [PIECE_LEVELS]]] (default 1024 MiB, 20 s,
// whole subtrees). Pauses are
// MemStats.PauseNs of the cycles that began in the replacement phase: per cycle, both
// stops (sweep termination and mark termination) added up, as Go records them.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const depth = 10
const subtreeNodes = 1<<depth - 1

// 40 bytes: the 48-byte size class, as the Rust node (header word + 32 bytes).
const nodeBytes = 48
const threads = 2

type Node struct {
	left, right, other *Node
	value, pad         uint64
}

// build makes a subtree of d levels; each subtree of piece levels below is a unit whose
// other links stay inside it (see pause.rs).
func build(d, piece int, prev **Node, value uint64) *Node {
	if d == piece && piece < depth {
		var p *Node
		n := build(d, depth, &p, value)
		*prev = nil
		return n
	}
	var l, r *Node
	if d > 1 {
		l = build(d-1, piece, prev, value*2)
		r = build(d-1, piece, prev, value*2|1)
	}
	n := &Node{left: l, right: r, other: *prev, value: value}
	*prev = n
	return n
}

func subtree(piece int, seed uint64) *Node {
	var prev *Node
	return build(depth, piece, &prev, seed)
}

// replace replaces a random piece of piece levels of the subtree in *slot.
func replace(slot **Node, piece int, r *rng) {
	if piece == depth {
		*slot = subtree(piece, r.next())
		return
	}
	n := *slot
	path := r.next()
	for level := 0; level < depth-piece-1; level++ {
		if path>>level&1 == 0 {
			n = n.left
		} else {
			n = n.right
		}
	}
	var p *Node
	nw := build(piece, depth, &p, r.next())
	if path>>63 == 0 {
		n.left = nw
	} else {
		n.right = nw
	}
}

func count(n *Node) int {
	if n == nil {
		return 0
	}
	return 1 + count(n.left) + count(n.right)
}

// xorshift64*, as in the Rust version.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*r = rng(x)
	return x * 0x2545f4914f6cdd1d
}

func peakRSSMiB() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb / 1024
		}
	}
	return 0
}

func ms(ns uint64) float64 { return float64(ns) / 1e6 }

func main() {
	liveMiB, seconds := 1024, 20.0
	if len(os.Args) > 1 {
		liveMiB, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		seconds, _ = strconv.ParseFloat(os.Args[2], 64)
	}
	piece := depth
	if len(os.Args) > 3 {
		piece, _ = strconv.Atoi(os.Args[3])
	}
	pieceNodes := 1<<piece - 1
	nslots := (liveMiB << 20) / (subtreeNodes * nodeBytes)
	if nslots < threads {
		nslots = threads
	}
	slots := make([]*Node, nslots)
	var built, start sync.WaitGroup
	var done sync.WaitGroup
	var replaced int64
	built.Add(threads)
	start.Add(1)
	done.Add(threads)
	t0 := time.Now()
	for id := 0; id < threads; id++ {
		go func(id int) {
			for i := id; i < nslots; i += threads {
				slots[i] = subtree(piece, uint64(i))
			}
			built.Done()
			start.Wait()
			end := time.Now().Add(time.Duration(seconds * float64(time.Second)))
			r := rng(0x9e3779b97f4a7c15 ^ uint64(id+1))
			mine := (nslots + threads - 1) / threads
			n := int64(0)
			for time.Now().Before(end) {
				k := id + threads*int(r.next()%uint64(mine))
				if k >= nslots {
					continue
				}
				replace(&slots[k], piece, &r)
				n++
			}
			atomic.AddInt64(&replaced, n)
			done.Done()
		}(id)
	}
	built.Wait()
	buildTime := time.Since(t0)
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	steady := time.Now()
	start.Done()
	done.Wait()
	wall := time.Since(steady)
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	cycles := int(st.NumGC - ms0.NumGC)
	var pauses []uint64
	for c := int(st.NumGC) - 1; c >= int(ms0.NumGC) && c > int(st.NumGC)-1-len(st.PauseNs); c-- {
		pauses = append(pauses, st.PauseNs[(c+len(st.PauseNs))%len(st.PauseNs)])
	}
	sort.Slice(pauses, func(i, j int) bool { return pauses[i] < pauses[j] })
	pct := func(p int) uint64 {
		if len(pauses) == 0 {
			return 0
		}
		k := (p*len(pauses) + 99) / 100
		if k < 1 {
			k = 1
		}
		return pauses[k-1]
	}
	var stopped uint64
	for _, p := range pauses {
		stopped += p
	}
	for _, i := range []int{0, nslots / 2, nslots - 1} {
		if count(slots[i]) != subtreeNodes {
			fmt.Println("slot", i, ": a damaged subtree")
			os.Exit(1)
		}
	}
	nodes := float64(replaced) * float64(pieceNodes)
	w := wall.Seconds()
	gogc := debug.SetGCPercent(100)
	fmt.Printf("pause benchmark (Go %s): live %d MiB (%d nodes of %d B in %d subtrees), %d mutator goroutines, GOGC %d, GOMAXPROCS %d; built in %.2f s, then %.1f s of replacement\n",
		runtime.Version(), liveMiB, nslots*subtreeNodes, nodeBytes, nslots, threads, gogc, runtime.GOMAXPROCS(0), buildTime.Seconds(), w)
	fmt.Printf("cycles %d (%d pauses kept); world-stopped pause max %.3f ms, p99 %.3f ms, p50 %.3f ms; stopped %.1f%% of the wall time\n",
		cycles, len(pauses), ms(pct(100)), ms(pct(99)), ms(pct(50)), float64(stopped)/1e9/w*100)
	fmt.Printf("mutators: %.0f pieces of %d nodes/s replaced, %.2f M nodes/s (%.0f MB/s) allocated; live heap after the last cycle %d MiB; peak RSS %d MiB\n",
		float64(replaced)/w, pieceNodes, nodes/w/1e6, nodes*nodeBytes/w/1e6, st.HeapAlloc>>20, peakRSSMiB())
	fmt.Printf("pause-result cycles=%d max_ms=%.3f p99_ms=%.3f p50_ms=%.3f stopped_pct=%.1f nodes_per_s=%.0f rss_mib=%d\n",
		cycles, ms(pct(100)), ms(pct(99)), ms(pct(50)), float64(stopped)/1e9/w*100, nodes/w, peakRSSMiB())
}
