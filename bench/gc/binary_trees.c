/* The Benchmarks Game binary-trees with the Boehm collector (GC_MALLOC), single thread. */
#include <gc.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct Node { struct Node *left, *right; } Node;

static Node *bottom_up(int d) {
    Node *n = GC_MALLOC(sizeof(Node));
    if (d > 0) { n->left = bottom_up(d - 1); n->right = bottom_up(d - 1); }
    else n->left = n->right = NULL;
    return n;
}

static int check(Node *n) { return n->left ? 1 + check(n->left) + check(n->right) : 1; }

int main(int argc, char **argv) {
    GC_INIT();
    int n = argc > 1 ? atoi(argv[1]) : 10, min_depth = 4;
    int max_depth = min_depth + 2 > n ? min_depth + 2 : n;
    printf("stretch tree of depth %d\t check: %d\n", max_depth + 1, check(bottom_up(max_depth + 1)));
    Node *long_lived = bottom_up(max_depth);
    for (int d = min_depth; d <= max_depth; d += 2) {
        int iters = 1 << (max_depth - d + min_depth), chk = 0;
        for (int i = 0; i < iters; i++) chk += check(bottom_up(d));
        printf("%d\t trees of depth %d\t check: %d\n", iters, d, chk);
    }
    printf("long lived tree of depth %d\t check: %d\n", max_depth, check(long_lived));
    if (getenv("GCSTATS")) fprintf(stderr, "gc-stats cycles=%lu\n", (unsigned long)GC_get_gc_no());
    return 0;
}
