/* realloc growth: 64 buffers grow by 1..256 bytes at a time through realloc, interleaved,
 * up to 1 MiB each, are freed, and start again, as string builders and vectors do. */
#include "common.h"

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long steps = scaled(2000000);
    rng_t r = rng_seed(9);
    enum { BUFS = 64, LIMIT = 1 << 20 };
    char *buf[BUFS] = {0};
    size_t len[BUFS] = {0};
    for (long i = 0; i < steps; i++) {
        int k = (int)(rng_next(&r) % BUFS);
        size_t n = len[k] + rng_range(&r, 1, 256);
        if (n > LIMIT) { free(buf[k]); buf[k] = NULL; len[k] = 0; continue; }
        char *p = realloc(buf[k], n);
        if (!p) { fprintf(stderr, "out of memory\n"); return 1; }
        p[n - 1] = (char)i;
        buf[k] = p; len[k] = n;
    }
    for (int k = 0; k < BUFS; k++) free(buf[k]);
    return 0;
}
