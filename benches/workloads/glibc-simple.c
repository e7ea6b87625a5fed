/* glibc-simple (after glibc's benchtests/bench-malloc-simple.c): single-threaded
 * batches: allocate N blocks of one size, then free them all, for N in 25, 100, 400, 1600
 * and sizes 16..4096 bytes. */
#include "common.h"

int main(int argc, char **argv) {
    parse_args(argc, argv);
    static const size_t sizes[] = {16, 32, 64, 128, 256, 512, 1024, 4096};
    static const int counts[] = {25, 100, 400, 1600};
    long reps = scaled(400);
    void **a = xmalloc(sizeof(void *) * 1600);
    for (long rep = 0; rep < reps; rep++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                int n = counts[c];
                for (int i = 0; i < n; i++) a[i] = xmalloc(sizes[s]);
                for (int i = 0; i < n; i++) free(a[i]);
            }
    free(a);
    return 0;
}
