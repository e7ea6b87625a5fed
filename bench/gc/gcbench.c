/* Boehm's GCBench (after Ellis & Kovac), with GC_MALLOC. */
#include <gc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { kStretchTreeDepth = 18, kLongLivedTreeDepth = 16, kArraySize = 500000,
       kMinTreeDepth = 4, kMaxTreeDepth = 16 };

typedef struct Node { struct Node *left, *right; int i, j; } Node;

static long ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000 + t.tv_nsec / 1000000; }
static Node *new_node(Node *l, Node *r) { Node *n = GC_MALLOC(sizeof(Node)); n->left = l; n->right = r; return n; }
static int tree_size(int i) { return (1 << (i + 1)) - 1; }
static int num_iters(int i) { return 2 * tree_size(kStretchTreeDepth) / tree_size(i); }
static void populate(int d, Node *n) {
    if (d <= 0) return;
    d--;
    n->left = new_node(NULL, NULL); n->right = new_node(NULL, NULL);
    populate(d, n->left); populate(d, n->right);
}
static Node *make_tree(int d) { return d <= 0 ? new_node(NULL, NULL) : new_node(make_tree(d - 1), make_tree(d - 1)); }
static int count(const Node *n) { return n ? 1 + count(n->left) + count(n->right) : 0; }
/* Exits with status 1 when a tree has the wrong number of nodes (the checks of
 * gc/examples/gcbench.rs, which also keep the long-lived tree live to the end). */
static void check(const char *what, const Node *n, int d) {
    int c = count(n);
    if (c != tree_size(d)) { printf("Failed: %s of depth %d has %d nodes\n", what, d, c); exit(1); }
}
static void time_construction(int d) {
    int n = num_iters(d);
    printf("Creating %d trees of depth %d\n", n, d);
    long t = ms();
    for (int i = 0; i < n; i++) {
        Node *temp = new_node(NULL, NULL);
        populate(d, temp);
        if (i == n - 1) check("a top-down tree", temp, d);
    }
    printf("\tTop down construction took %ld msec\n", ms() - t);
    t = ms();
    for (int i = 0; i < n; i++) {
        Node *temp = make_tree(d);
        if (i == n - 1) check("a bottom-up tree", temp, d);
    }
    printf("\tBottom up construction took %ld msec\n", ms() - t);
}
int main(void) {
    GC_INIT();
    long start = ms();
    printf("Garbage Collector Test\n");
    printf(" Stretching memory with a binary tree of depth %d\n", kStretchTreeDepth);
    check("the stretch tree", make_tree(kStretchTreeDepth), kStretchTreeDepth);
    printf(" Creating a long-lived binary tree of depth %d\n", kLongLivedTreeDepth);
    Node *long_lived = new_node(NULL, NULL);
    populate(kLongLivedTreeDepth, long_lived);
    printf(" Creating a long-lived array of %d doubles\n", kArraySize);
    double *a = GC_MALLOC_ATOMIC(sizeof(double) * kArraySize);
    for (int i = 0; i < kArraySize / 2; i++) a[i] = 1.0 / i;
    for (int d = kMinTreeDepth; d <= kMaxTreeDepth; d += 2) time_construction(d);
    if (a[1000] != 1.0 / 1000) { printf("Failed: the long-lived array changed\n"); exit(1); }
    check("the long-lived tree", long_lived, kLongLivedTreeDepth);
    printf("Completed in %ld msec\n", ms() - start);
    if (getenv("GCSTATS")) fprintf(stderr, "gc-stats cycles=%lu\n", (unsigned long)GC_get_gc_no());
    return 0;
}
