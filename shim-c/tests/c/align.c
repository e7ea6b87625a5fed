/* Alignments from 8 bytes to 8 MiB through every aligned entry point. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <malloc.h>
#include <string.h>

extern void *__libc_memalign(size_t, size_t);

enum { MAX_ALIGN_SHIFT = 23 }; /* 8 MiB */

static void *via_posix_memalign(size_t a, size_t n) {
    void *p = NULL;
    int r = posix_memalign(&p, a, n);
    return r == 0 ? p : NULL;
}

static void *via_aligned_alloc(size_t a, size_t n) {
    /* C11 wants n a multiple of a; glibc 2.36 does not care; test both kinds. */
    return aligned_alloc(a, n);
}

static void *via_realloc_then_memalign(size_t a, size_t n) {
    void *p = memalign(a, n / 2 + 1);
    if (!p) return NULL;
    free(p);
    return memalign(a, n);
}

struct way {
    const char *name;
    void *(*fn)(size_t, size_t);
} ways[] = {
    {"posix_memalign", via_posix_memalign},
    {"aligned_alloc", via_aligned_alloc},
    {"memalign", memalign},
    {"__libc_memalign", __libc_memalign},
    {"memalign after free", via_realloc_then_memalign},
};

TEST(alignments_8_bytes_to_8_mib, T_SLOW) {
    for (size_t w = 0; w < sizeof ways / sizeof *ways; w++) {
        for (int shift = 3; shift <= MAX_ALIGN_SHIFT; shift++) {
            size_t a = (size_t)1 << shift;
            size_t sizes[] = {0, 1, 8, a / 2 + 1, a - 1, a, a + 1, 2 * a + 8, 3 * a, 100, 5000};
            enum { NS = sizeof sizes / sizeof *sizes };
            void *p[NS][3];
            for (int s = 0; s < NS; s++) {
                for (int k = 0; k < 3; k++) {
                    size_t n = sizes[s];
                    p[s][k] = ways[w].fn(a, n);
                    CHECKF(p[s][k] != NULL, "%s(%zu, %zu)", ways[w].name, a, n);
                    CHECKF(is_aligned(p[s][k], a), "%s(%zu, %zu) = %p", ways[w].name, a, n, p[s][k]);
                    size_t u = malloc_usable_size(p[s][k]);
                    CHECKF(u >= n, "%s(%zu, %zu): usable %zu", ways[w].name, a, n, u);
                    fill_pattern(p[s][k], n, (uint64_t)shift * 1000 + s * 10 + k);
                }
            }
            for (int s = 0; s < NS; s++)
                for (int k = 0; k < 3; k++) {
                    CHECKF(check_pattern(p[s][k], sizes[s], (uint64_t)shift * 1000 + s * 10 + k),
                           "%s(%zu, %zu) block %d overwritten", ways[w].name, a, sizes[s], k);
                    free(p[s][k]);
                }
        }
    }
}

TEST(aligned_blocks_interleaved_with_small_ones, 0) {
    /* Aligned requests in the middle of a busy small-object heap. */
    enum { N = 3000 };
    static void *p[N];
    static size_t al[N];
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) {
        uint64_t r = rng_next(&rng);
        size_t a = (size_t)1 << (3 + r % 14); /* 8 .. 64 KiB */
        size_t n = (r >> 20) % 2000;
        if (i % 3) {
            p[i] = malloc(n);
            al[i] = 8;
        } else {
            CHECK(posix_memalign(&p[i], a, n) == 0);
            al[i] = a;
        }
        CHECK(p[i] != NULL && is_aligned(p[i], al[i]));
        fill_pattern(p[i], n, i);
        al[i] |= n << 20;
    }
    for (int i = 0; i < N; i++) {
        CHECK(check_pattern(p[i], al[i] >> 20, i));
        free(p[i]);
    }
}

TEST(realloc_keeps_data_of_every_alignment, 0) {
    for (int shift = 3; shift <= MAX_ALIGN_SHIFT; shift++) {
        size_t a = (size_t)1 << shift;
        void *p = aligned_alloc(a, 64);
        CHECK(p != NULL && is_aligned(p, a));
        fill_pattern(p, 64, shift);
        p = realloc(p, a + 100);
        CHECK(p != NULL && check_pattern(p, 64, shift));
        p = realloc(p, 10);
        CHECK(p != NULL && check_pattern(p, 10, shift));
        free(p);
    }
}
