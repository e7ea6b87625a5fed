/* random-size churn in one thread: a window of 4096 live blocks of 8 to 512 bytes, one
 * replaced at random each step (tens of millions of steps at full scale). It models an
 * interpreter's or a parser's heap: many size classes in use at once and frees in no
 * particular order, unlike the pair and batch benchmarks of the same sizes, where each
 * free goes back to the span the thread is allocating from. */
#include "common.h"

enum { WINDOW = 4096 };

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long steps = scaled(20000000);
    rng_t r = rng_seed(11);
    char *slot[WINDOW];
    for (int k = 0; k < WINDOW; k++) {
        slot[k] = xmalloc(rng_range(&r, 8, 512));
        touch(slot[k], 8);
    }
    unsigned long sum = 0;
    for (long i = 0; i < steps; i++) {
        uint64_t x = rng_next(&r);
        int k = (int)(x % WINDOW);
        sum += (unsigned char)slot[k][0];
        free(slot[k]);
        size_t n = 8 + (size_t)((x >> 20) % 505);
        slot[k] = xmalloc(n);
        slot[k][0] = (char)i;
    }
    for (int k = 0; k < WINDOW; k++) free(slot[k]);
    printf("checksum %lu\n", sum);
    return 0;
}
