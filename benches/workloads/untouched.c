/* large blocks that are mostly untouched: about 40 live blocks of 64 KiB to 4 MiB, one
 * replaced at random each step, and only the first page of each written. It models buffers
 * sized for the worst case (`Vec::with_capacity`, a read buffer, a per-request arena) that
 * use a little of what they reserve. An allocator that places each new block over pages
 * the program touched before keeps RSS near the touched pages (about 40 x 4 KiB); one that
 * places it elsewhere faults in fresh pages while the freed ones stay resident until they
 * are released. Prints `metric faults` (minor page faults) and `metric rss_end_kb`. */
#include "common.h"
#include <sys/resource.h>

enum { SLOTS = 40, PAGE = 4096 };

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long steps = scaled(400000);
    rng_t r = rng_seed(7);
    char *slot[SLOTS] = {0};
    unsigned long sum = 0;
    for (long i = 0; i < steps; i++) {
        int k = (int)rng_range(&r, 0, SLOTS - 1);
        free(slot[k]);
        size_t n = rng_range(&r, 64 << 10, 4 << 20);
        slot[k] = xmalloc(n);
        memset(slot[k], (int)i, PAGE); /* the first page only */
        sum += (unsigned char)slot[k][n / 2 > PAGE ? PAGE - 1 : 0];
    }
    for (int k = 0; k < SLOTS; k++) free(slot[k]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("metric faults %ld\n", ru.ru_minflt);
    printf("metric rss_end_kb %ld\n", rss_now_kb());
    printf("checksum %lu\n", sum);
    return 0;
}
