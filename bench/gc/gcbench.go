// Boehm's GCBench in Go.
package main

import (
	"fmt"
	"os"
	"time"
)

const (
	stretchTreeDepth   = 18
	longLivedTreeDepth = 16
	arraySize          = 500000
	minTreeDepth       = 4
	maxTreeDepth       = 16
)

type Node struct {
	left, right *Node
	i, j        int32
}

func treeSize(i int) int { return (1 << uint(i+1)) - 1 }
func numIters(i int) int { return 2 * treeSize(stretchTreeDepth) / treeSize(i) }

func populate(d int, n *Node) {
	if d <= 0 {
		return
	}
	d--
	n.left, n.right = &Node{}, &Node{}
	populate(d, n.left)
	populate(d, n.right)
}

func makeTree(d int) *Node {
	if d <= 0 {
		return &Node{}
	}
	return &Node{left: makeTree(d - 1), right: makeTree(d - 1)}
}

// count returns the nodes of the tree under n.
func count(n *Node) int {
	if n == nil {
		return 0
	}
	return 1 + count(n.left) + count(n.right)
}

// check exits with status 1 when a tree has the wrong number of nodes (the checks of
// gc/examples/gcbench.rs, which also keep the long-lived tree live to the end).
func check(what string, n *Node, d int) {
	if c := count(n); c != treeSize(d) {
		fmt.Printf("Failed: %s of depth %d has %d nodes\n", what, d, c)
		os.Exit(1)
	}
}

func timeConstruction(d int) {
	n := numIters(d)
	fmt.Printf("Creating %d trees of depth %d\n", n, d)
	t := time.Now()
	for i := 0; i < n; i++ {
		temp := &Node{}
		populate(d, temp)
		if i == n-1 {
			check("a top-down tree", temp, d)
		}
	}
	fmt.Printf("\tTop down construction took %d msec\n", time.Since(t).Milliseconds())
	t = time.Now()
	for i := 0; i < n; i++ {
		temp := makeTree(d)
		if i == n-1 {
			check("a bottom-up tree", temp, d)
		}
	}
	fmt.Printf("\tBottom up construction took %d msec\n", time.Since(t).Milliseconds())
}

func main() {
	start := time.Now()
	fmt.Println("Garbage Collector Test")
	fmt.Printf(" Stretching memory with a binary tree of depth %d\n", stretchTreeDepth)
	check("the stretch tree", makeTree(stretchTreeDepth), stretchTreeDepth)
	fmt.Printf(" Creating a long-lived binary tree of depth %d\n", longLivedTreeDepth)
	long := &Node{}
	populate(longLivedTreeDepth, long)
	fmt.Printf(" Creating a long-lived array of %d doubles\n", arraySize)
	a := make([]float64, arraySize)
	for i := 0; i < arraySize/2; i++ {
		a[i] = 1.0 / float64(i)
	}
	for d := minTreeDepth; d <= maxTreeDepth; d += 2 {
		timeConstruction(d)
	}
	if a[1000] != 1.0/1000 {
		fmt.Println("Failed: the long-lived array changed")
		os.Exit(1)
	}
	check("the long-lived tree", long, longLivedTreeDepth)
	fmt.Printf("Completed in %d msec\n", time.Since(start).Milliseconds())
}
