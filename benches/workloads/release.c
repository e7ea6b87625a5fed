/* memory given back: allocate about 1 GiB (at full scale) in blocks of 16..256 bytes, free
 * all but the oldest 1%, then make no allocator call for two seconds and print the RSS
 * (`metric rss_after_2s_kb`; `rss_full_kb` before the frees): issue 5's measurement of a
 * scavenger. An allocator without one keeps most of the freed memory resident. The two
 * seconds are in every allocator's wall time alike. */
#include "common.h"
#include <unistd.h>

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long n = scaled(1L << 30) / 136; /* 136 bytes on average */
    void **a = xmalloc(sizeof(void *) * (size_t)n);
    for (long i = 0; i < n; i++) {
        size_t s = 16 + (size_t)(i % 16) * 16;
        a[i] = xmalloc(s);
        memset(a[i], (int)i, s);
    }
    printf("metric rss_full_kb %ld\n", rss_now_kb());
    long keep = n / 100;
    for (long i = keep; i < n; i++) free(a[i]);
    a = realloc(a, sizeof(void *) * (size_t)(keep > 0 ? keep : 1));
    if (!a) return 1;
    sleep(2); /* no allocator call from here ... */
    printf("metric rss_after_2s_kb %ld\n", rss_now_kb()); /* ... to here */
    for (long i = 0; i < keep; i++) {
        size_t s = 16 + (size_t)(i % 16) * 16;
        if (((unsigned char *)a[i])[s - 1] != (unsigned char)i) return 2;
        free(a[i]);
    }
    free(a);
    return 0;
}
