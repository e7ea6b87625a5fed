// Boehm's GCBench in Go.
package main

import (
	"fmt"
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

func timeConstruction(d int) {
	n := numIters(d)
	fmt.Printf("Creating %d trees of depth %d\n", n, d)
	t := time.Now()
	for i := 0; i < n; i++ {
		populate(d, &Node{})
	}
	fmt.Printf("\tTop down construction took %d msec\n", time.Since(t).Milliseconds())
	t = time.Now()
	for i := 0; i < n; i++ {
		makeTree(d)
	}
	fmt.Printf("\tBottom up construction took %d msec\n", time.Since(t).Milliseconds())
}

func main() {
	start := time.Now()
	fmt.Println("Garbage Collector Test")
	fmt.Printf(" Stretching memory with a binary tree of depth %d\n", stretchTreeDepth)
	makeTree(stretchTreeDepth)
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
	if long == nil || a[1000] != 1.0/1000 {
		fmt.Println("Failed")
	}
	fmt.Printf("Completed in %d msec\n", time.Since(start).Milliseconds())
}
