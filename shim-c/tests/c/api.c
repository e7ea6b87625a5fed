/* Edge cases of every exported function, against glibc 2.36's documented and measured
 * behaviour. Every test here passes on glibc's own malloc too (run without LD_PRELOAD). */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

/* glibc exports these (GLIBC_2.2.5) but declares them in no header. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

#define PAGE ((size_t)sysconf(_SC_PAGESIZE))

/* The alignment C17 7.22.3 requires of malloc(n): fit for every type whose size fits. */
static size_t required_align(size_t n) {
    if (n >= 16) return 16;
    if (n >= 8) return 8;
    if (n >= 4) return 4;
    if (n >= 2) return 2;
    return 1;
}

static size_t next_size(size_t n) { return n < 4096 ? n + 1 : n + n / 8 + 8; }

TEST(malloc_zero_is_unique_and_non_null, 0) {
    void *p[1000];
    for (int i = 0; i < 1000; i++) {
        p[i] = malloc(0);
        CHECK(p[i] != NULL);
        CHECK(is_aligned(p[i], 8));
        for (int j = 0; j < i; j++) CHECK(p[i] != p[j]);
    }
    for (int i = 0; i < 1000; i++) free(p[i]);
}

TEST(malloc_sizes_alignment_usable_no_overlap, T_SLOW) {
    enum { N = 64 };
    for (size_t n = 0; n <= ((size_t)64 << 20); n = next_size(n)) {
        void *p[N];
        int count = n > (1 << 20) ? 4 : N;
        for (int i = 0; i < count; i++) {
            p[i] = malloc(n);
            CHECKF(p[i] != NULL, "malloc(%zu)", n);
            CHECKF(is_aligned(p[i], required_align(n)) && is_aligned(p[i], 8), "malloc(%zu) = %p", n, p[i]);
            size_t u = malloc_usable_size(p[i]);
            CHECKF(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
            fill_pattern(p[i], u, n * 1000 + i);
        }
        for (int i = 0; i < count; i++) {
            CHECKF(check_pattern(p[i], malloc_usable_size(p[i]), n * 1000 + i), "block %d of size %zu overwritten", i, n);
            free(p[i]);
        }
    }
}

TEST(malloc_too_large_fails_with_enomem, 0) {
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX,
                      (size_t)1 << 62, (size_t)1 << 48};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0;
        void *p = malloc(sizes[i]);
        CHECKF(p == NULL && errno == ENOMEM, "malloc(%zu) = %p errno %d", sizes[i], p, errno);
        errno = 0;
        p = __libc_malloc(sizes[i]);
        CHECKF(p == NULL && errno == ENOMEM, "__libc_malloc(%zu) = %p errno %d", sizes[i], p, errno);
    }
    /* The heap still works afterwards. */
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
}

TEST(calloc_returns_zeroed_memory_after_reuse, T_SLOW) {
    for (size_t n = 1; n <= ((size_t)16 << 20); n = next_size(n)) {
        int rounds = n > 65536 ? 2 : 8;
        for (int r = 0; r < rounds; r++) {
            /* Dirty blocks of this size, free them, then calloc the same size. */
            void *d[4];
            for (int i = 0; i < 4; i++) {
                d[i] = malloc(n);
                CHECK(d[i] != NULL);
                memset(d[i], 0xA5, malloc_usable_size(d[i]));
            }
            for (int i = 0; i < 4; i++) free(d[i]);
            unsigned char *c = calloc(1, n);
            CHECKF(c != NULL, "calloc(1, %zu)", n);
            CHECK(is_aligned(c, required_align(n)));
            for (size_t k = 0; k < n; k++) CHECKF(c[k] == 0, "calloc(1, %zu)[%zu] = %#x", n, k, c[k]);
            free(c);
        }
    }
}

TEST(calloc_zero_and_overflow, 0) {
    void *p = calloc(0, 0);
    CHECK(p != NULL);
    free(p);
    p = calloc(0, SIZE_MAX);
    CHECK(p != NULL);
    free(p);
    p = calloc(SIZE_MAX, 0);
    CHECK(p != NULL);
    free(p);
    size_t bad[][2] = {{SIZE_MAX / 2 + 1, 2}, {2, SIZE_MAX}, {SIZE_MAX, SIZE_MAX},
                       {(size_t)1 << 32, (size_t)1 << 32}, {(size_t)PTRDIFF_MAX / 2 + 1, 2},
                       {1, SIZE_MAX}, {(size_t)1 << 31, (size_t)1 << 31}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        p = calloc(bad[i][0], bad[i][1]);
        CHECKF(p == NULL && errno == ENOMEM, "calloc(%zu, %zu) = %p errno %d", bad[i][0], bad[i][1], p, errno);
        errno = 0;
        p = __libc_calloc(bad[i][0], bad[i][1]);
        CHECKF(p == NULL && errno == ENOMEM, "__libc_calloc(%zu, %zu)", bad[i][0], bad[i][1]);
    }
}

TEST(realloc_null_and_zero, 0) {
    void *p = realloc(NULL, 0);
    CHECK(p != NULL);
    free(p);
    p = realloc(NULL, 100);
    CHECK(p != NULL && malloc_usable_size(p) >= 100);
    /* realloc(p, 0) frees p and returns NULL without touching errno. */
    errno = 4242;
    void *q = realloc(p, 0);
    CHECK(q == NULL);
    CHECK(errno == 4242);
    p = __libc_realloc(NULL, 10);
    CHECK(p != NULL);
    CHECK(__libc_realloc(p, 0) == NULL);
}

TEST(realloc_grow_and_shrink_keep_contents, T_SLOW) {
    size_t n = 1;
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    fill_pattern(p, n, 1);
    /* Grow to 32 MiB, then shrink back, checking the common prefix at every step. */
    while (n < ((size_t)32 << 20)) {
        size_t m = n + n / 3 + 1;
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu -> %zu)", n, m);
        CHECKF(check_pattern(q, n, n), "contents lost growing %zu -> %zu", n, m);
        CHECK(malloc_usable_size(q) >= m);
        fill_pattern(q, m, m);
        p = q, n = m;
    }
    while (n > 1) {
        size_t m = n - n / 3 - 1;
        if (m == 0) m = 1;
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu -> %zu)", n, m);
        CHECKF(check_pattern(q, m, n), "contents lost shrinking %zu -> %zu", n, m);
        CHECK(malloc_usable_size(q) >= m);
        fill_pattern(q, m, m);
        p = q, n = m;
    }
    free(p);
}


TEST(realloc_random_walk, T_SLOW) {
    enum { SLOTS = 256 };
    void *p[SLOTS] = {0};
    size_t sz[SLOTS] = {0};
    uint64_t seed[SLOTS] = {0};
    uint64_t rng = 12345;
    for (int step = 0; step < 200000; step++) {
        int i = rng_next(&rng) % SLOTS;
        if (p[i]) CHECKF(check_pattern(p[i], sz[i], seed[i]), "slot %d (size %zu) corrupted at step %d", i, sz[i], step);
        uint64_t r = rng_next(&rng);
        size_t n = (r & 7) == 0 ? r % 300000 : (r & 7) < 4 ? r % 512 : r % 8192;
        unsigned op = (r >> 40) % 4;
        if (op == 0) {
            free(p[i]);
            p[i] = NULL;
            sz[i] = 0;
            continue;
        }
        if (op == 1 && n != 0) {
            void *q = realloc(p[i], n);
            CHECK(q != NULL);
            size_t keep = sz[i] < n ? sz[i] : n;
            if (p[i]) CHECKF(check_pattern(q, keep, seed[i]), "realloc lost data (%zu -> %zu)", sz[i], n);
            p[i] = q;
        } else {
            free(p[i]);
            p[i] = op == 2 ? malloc(n) : calloc(1, n);
            CHECK(p[i] != NULL);
            if (op == 3)
                for (size_t k = 0; k < n; k++) CHECK(((unsigned char *)p[i])[k] == 0);
        }
        sz[i] = n;
        seed[i] = r;
        fill_pattern(p[i], n, r);
    }
    for (int i = 0; i < SLOTS; i++) free(p[i]);
}

TEST(realloc_failure_leaves_block_intact, 0) {
    size_t bad[] = {SIZE_MAX, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62, (size_t)1 << 48};
    size_t sizes[] = {1, 100, 5000, 100000, 3 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        void *p = malloc(sizes[s]);
        CHECK(p != NULL);
        fill_pattern(p, sizes[s], s);
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
            errno = 0;
            void *q = realloc(p, bad[b]);
            CHECKF(q == NULL && errno == ENOMEM, "realloc(%zu -> %zu) = %p errno %d", sizes[s], bad[b], q, errno);
            CHECK(check_pattern(p, sizes[s], s));
        }
        CHECK(malloc_usable_size(p) >= sizes[s]);
        free(p);
    }
}

TEST(realloc_of_aligned_blocks_keeps_contents, 0) {
    for (size_t a = 16; a <= ((size_t)1 << 20); a <<= 1) {
        void *p = memalign(a, 100);
        CHECK(p != NULL && is_aligned(p, a));
        fill_pattern(p, 100, a);
        p = realloc(p, 100000);
        CHECK(p != NULL);
        CHECK(check_pattern(p, 100, a));
        p = realloc(p, 50);
        CHECK(p != NULL);
        CHECK(check_pattern(p, 50, a));
        free(p);
    }
}

TEST(reallocarray_edge_cases, 0) {
    void *p = reallocarray(NULL, 0, 0);
    CHECK(p != NULL);
    free(p);
    p = reallocarray(NULL, 10, 10);
    CHECK(p != NULL && malloc_usable_size(p) >= 100);
    fill_pattern(p, 100, 7);
    errno = 0;
    void *q = reallocarray(p, SIZE_MAX / 2 + 1, 2);
    CHECK(q == NULL && errno == ENOMEM);
    errno = 0;
    q = reallocarray(p, (size_t)1 << 32, (size_t)1 << 32);
    CHECK(q == NULL && errno == ENOMEM);
    CHECK(check_pattern(p, 100, 7));
    q = reallocarray(p, 1000, 8);
    CHECK(q != NULL && malloc_usable_size(q) >= 8000);
    CHECK(check_pattern(q, 100, 7));
    /* A zero product is realloc(q, 0): frees and returns NULL. */
    CHECK(reallocarray(q, 0, 5) == NULL);
}

TEST(free_null_and_errno_preserved, 0) {
    free(NULL);
    __libc_free(NULL);
    size_t sizes[] = {0, 1, 8, 24, 100, 1000, 32768, 32769, 100000, 1 << 20, 64 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = malloc(sizes[i]);
        void *q = memalign(4096, sizes[i]);
        void *r = calloc(1, sizes[i]);
        CHECK(p && q && r);
        errno = 1234;
        free(p);
        CHECK(errno == 1234);
        free(q);
        CHECK(errno == 1234);
        __libc_free(r);
        CHECK(errno == 1234);
    }
    errno = 99;
    free(NULL);
    CHECK(errno == 99);
}

TEST(free_of_many_blocks_returns_memory_to_the_os, T_SLOW) {
    /* 256 MiB in 64 KiB blocks, then 256 MiB in 256-byte blocks: after freeing each batch
     * and calling malloc_trim(0), at least half of it must have left the RSS. */
    size_t sizes[] = {65536, 256};
    for (int s = 0; s < 2; s++) {
        size_t n = ((size_t)256 << 20) / sizes[s];
        void **v = malloc(n * sizeof *v);
        CHECK(v != NULL);
        size_t before = rss_bytes();
        for (size_t i = 0; i < n; i++) {
            v[i] = malloc(sizes[s]);
            CHECK(v[i] != NULL);
            memset(v[i], (int)i, sizes[s]);
        }
        size_t peak = rss_bytes();
        CHECKF(peak > before + ((size_t)200 << 20), "RSS grew only %zu KiB", (peak - before) >> 10);
        for (size_t i = 0; i < n; i++) free(v[i]);
        int r = malloc_trim(0);
        CHECK(r == 0 || r == 1);
        size_t after = rss_bytes();
        CHECKF(after < peak - ((size_t)128 << 20), "size %zu: RSS before %zu KiB, peak %zu KiB, after free+trim %zu KiB",
               sizes[s], before >> 10, peak >> 10, after >> 10);
        free(v);
    }
}

TEST(posix_memalign_einval_is_returned_not_set, 0) {
    size_t bad[] = {0, 1, 2, 4, 12, 24, 40, 48, 96, 4095, 4097, (size_t)1 << 63 | 8, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *sentinel = (void *)0x1234;
        void *p = sentinel;
        errno = 4321;
        int r = posix_memalign(&p, bad[i], 100);
        CHECKF(r == EINVAL, "posix_memalign(align %zu) returned %d", bad[i], r);
        CHECK(errno == 4321);
        CHECK(p == sentinel);
    }
}

TEST(posix_memalign_enomem_leaves_memptr, 0) {
    size_t cases[][2] = {{64, SIZE_MAX - 10}, {64, (size_t)PTRDIFF_MAX + 1}, {4096, (size_t)1 << 62},
                         {(size_t)1 << 62, 10}, {(size_t)1 << 63, 10}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        void *sentinel = (void *)0x5678;
        void *p = sentinel;
        int r = posix_memalign(&p, cases[i][0], cases[i][1]);
        CHECKF(r == ENOMEM, "posix_memalign(align %zu, size %zu) returned %d", cases[i][0], cases[i][1], r);
        CHECK(p == sentinel);
    }
}

TEST(aligned_alloc_and_memalign_round_alignment_up, 0) {
    /* glibc 2.36: aligned_alloc is memalign; a non-power-of-two alignment is rounded up. */
    void *(*fns[])(size_t, size_t) = {aligned_alloc, memalign, __libc_memalign};
    const char *names[] = {"aligned_alloc", "memalign", "__libc_memalign"};
    size_t cases[][2] = {{24, 32}, {17, 32}, {33, 64}, {48, 64}, {100, 128}, {4097, 8192}, {3, 1},
                         {0, 1}, {1, 1}, {5, 1}, {(size_t)3 << 20, (size_t)4 << 20}};
    for (int f = 0; f < 3; f++) {
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            for (size_t size = 0; size < 300; size += 37) {
                void *p = fns[f](cases[i][0], size);
                CHECKF(p != NULL, "%s(%zu, %zu)", names[f], cases[i][0], size);
                CHECKF(is_aligned(p, cases[i][1]), "%s(%zu, %zu) = %p not %zu-aligned", names[f], cases[i][0], size, p, cases[i][1]);
                CHECKF(is_aligned(p, required_align(size)), "%s(%zu, %zu) = %p below malloc alignment", names[f], cases[i][0], size, p);
                CHECK(malloc_usable_size(p) >= size);
                memset(p, 0x5a, size);
                free(p);
            }
        }
        errno = 0;
        void *p = fns[f]((size_t)1 << 63 | 1, 10);
        CHECKF(p == NULL && errno == EINVAL, "%s(2^63+1) = %p errno %d", names[f], p, errno);
        errno = 0;
        p = fns[f](SIZE_MAX, 10);
        CHECK(p == NULL && errno == EINVAL);
        errno = 0;
        p = fns[f]((size_t)1 << 63, 10);
        CHECKF(p == NULL && errno == ENOMEM, "%s(2^63) = %p errno %d", names[f], p, errno);
        errno = 0;
        p = fns[f](64, SIZE_MAX - 100);
        CHECKF(p == NULL && errno == ENOMEM, "%s(64, huge) = %p errno %d", names[f], p, errno);
        errno = 0;
        p = fns[f](64, (size_t)PTRDIFF_MAX + 1);
        CHECK(p == NULL && errno == ENOMEM);
    }
}

TEST(valloc_and_pvalloc, 0) {
    void *(*vfns[])(size_t) = {valloc, __libc_valloc, pvalloc, __libc_pvalloc};
    for (int f = 0; f < 4; f++) {
        int is_pvalloc = f >= 2;
        size_t sizes[] = {0, 1, 100, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 5, 1 << 20, (1 << 20) + 1};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            void *p = vfns[f](sizes[i]);
            CHECK(p != NULL);
            CHECK(is_aligned(p, PAGE));
            size_t want = is_pvalloc && sizes[i] ? (sizes[i] + PAGE - 1) / PAGE * PAGE : sizes[i];
            CHECKF(malloc_usable_size(p) >= want, "f%d(%zu): usable %zu < %zu", f, sizes[i], malloc_usable_size(p), want);
            memset(p, 1, want);
            free(p);
        }
        size_t bad[] = {SIZE_MAX, SIZE_MAX - PAGE + 2, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            errno = 0;
            void *p = vfns[f](bad[i]);
            CHECKF(p == NULL && errno == ENOMEM, "f%d(%zu) = %p errno %d", f, bad[i], p, errno);
        }
    }
}

TEST(usable_size_of_null_is_zero, 0) { CHECK(malloc_usable_size(NULL) == 0); }

TEST(usable_bytes_are_all_writable, 0) {
    /* Fill every usable byte of many neighbouring blocks; any overlap shows as corruption. */
    enum { N = 2000 };
    static void *p[N];
    uint64_t rng = 99;
    for (int i = 0; i < N; i++) {
        size_t n = rng_next(&rng) % (i % 10 == 0 ? 70000 : 600);
        p[i] = malloc(n);
        CHECK(p[i] != NULL);
        fill_pattern(p[i], malloc_usable_size(p[i]), i);
    }
    for (int i = 0; i < N; i++) {
        CHECK(check_pattern(p[i], malloc_usable_size(p[i]), i));
        free(p[i]);
    }
}

TEST(libc_aliases_mix_with_plain_names, 0) {
    /* A pointer from one name must be accepted by every other name. */
    void *a = __libc_malloc(100), *b = malloc(100), *c = __libc_calloc(10, 10), *d = __libc_memalign(256, 10);
    CHECK(a && b && c && d && is_aligned(d, 256));
    for (int i = 0; i < 100; i++) CHECK(((unsigned char *)c)[i] == 0);
    CHECK(malloc_usable_size(a) >= 100 && malloc_usable_size(d) >= 10);
    a = __libc_realloc(a, 10000);
    b = realloc(b, 20000);
    CHECK(a && b);
    free(a);
    __libc_free(b);
    free(c);
    __libc_free(d);
}

TEST(optional_symbols, 0) {
    /* free_sized / free_aligned_sized (C23), cfree and __posix_memalign are missing from
     * glibc 2.36's public symbols; libgomalloc.so defines all four. */
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))lookup("free_sized");
    void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))lookup("free_aligned_sized");
    void (*cf)(void *) = (void (*)(void *))lookup("cfree");
    int (*pm)(void **, size_t, size_t) = (int (*)(void **, size_t, size_t))lookup("__posix_memalign");
    if (expect_gomalloc) CHECK(fs && fas && cf && pm);
    if (!fs && !fas && !cf && !pm) SKIP("none of free_sized, free_aligned_sized, cfree, __posix_memalign in glibc");
    if (fs) {
        for (size_t n = 0; n < 100000; n = next_size(n) * 2) {
            void *p = malloc(n);
            CHECK(p != NULL);
            errno = 77;
            fs(p, n);
            CHECK(errno == 77);
        }
        fs(NULL, 0);
    }
    if (fas) {
        for (size_t a = 8; a <= 65536; a <<= 1) {
            void *p = aligned_alloc(a, 3 * a);
            CHECK(p != NULL);
            fas(p, a, 3 * a);
        }
        fas(NULL, 64, 0);
    }
    if (cf) {
        cf(malloc(10));
        cf(NULL);
    }
    if (pm) {
        void *p = (void *)1;
        CHECK(pm(&p, 24, 10) == EINVAL && p == (void *)1);
        CHECK(pm(&p, 4096, 10) == 0 && is_aligned(p, 4096));
        free(p);
    }
}

TEST(mallinfo2_tracks_live_bytes, 0) {
    enum { N = 64 };
    void *p[N];
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(1 << 20);
        CHECK(p[i] != NULL);
        memset(p[i], 1, 1 << 20);
    }
    struct mallinfo2 during = mallinfo2();
    for (int i = 0; i < N; i++) free(p[i]);
    struct mallinfo2 after = mallinfo2();
    size_t used_before = before.uordblks + before.hblkhd;
    size_t used_during = during.uordblks + during.hblkhd;
    size_t used_after = after.uordblks + after.hblkhd;
    CHECKF(used_during >= used_before + ((size_t)60 << 20), "in use: before %zu, with 64 MiB live %zu", used_before, used_during);
    CHECKF(used_after + ((size_t)60 << 20) <= used_during, "in use: with 64 MiB live %zu, after free %zu", used_during, used_after);
    CHECK(during.arena + during.hblkhd >= used_during);
    struct mallinfo m = mallinfo();
    CHECK(m.uordblks >= 0 && m.arena >= 0);
}

TEST(mallopt_accepts_common_parameters, 0) {
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1);
    CHECK(mallopt(M_TOP_PAD, 0) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
    CHECK(mallopt(M_ARENA_MAX, 2) == 1);
    CHECK(mallopt(M_MMAP_MAX, 1000) == 1);
    void *p = malloc(10);
    CHECK(p != NULL);
    free(p);
}

static void call_malloc_stats(void *arg) {
    (void)arg;
    void *p = malloc(12345);
    malloc_stats();
    free(p);
}

TEST(malloc_stats_prints_glibc_lines_to_stderr, 0) {
    char buf[8192];
    int st = run_in_child(call_malloc_stats, NULL, buf, sizeof buf);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECKF(strstr(buf, "system bytes") && strstr(buf, "in use bytes"), "malloc_stats wrote: %s", buf);
}

TEST(malloc_info_writes_xml, 0) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    CHECK(malloc_info(0, f) == 0);
    fclose(f);
    CHECK(text && strstr(text, "<malloc version=") && strstr(text, "</malloc>"));
    free(text);
    f = fopen("/dev/null", "w");
    /* glibc 2.36 returns EINVAL for options != 0 (the manual says -1 and errno). */
    errno = 0;
    CHECK(malloc_info(1, f) == EINVAL && errno == 0);
    fclose(f);
}

TEST(malloc_trim_returns_0_or_1, 0) {
    void *p = malloc(1 << 20);
    free(p);
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1);
    r = malloc_trim(1 << 20);
    CHECK(r == 0 || r == 1);
}

TEST(pvalloc_zero_is_one_page, 0) {
    void *p = pvalloc(0), *q = __libc_pvalloc(0);
    CHECK(p != NULL && q != NULL && p != q);
    CHECK(is_aligned(p, PAGE) && is_aligned(q, PAGE));
    /* glibc 2.36 rounds 0 to 1 byte (its ALIGN_UP masks with -(pagesize - 1)), so the
     * whole page is only promised by libgomalloc.so (README: "pvalloc(0) is one page"). */
    if (expect_gomalloc) {
        CHECKF(malloc_usable_size(p) >= PAGE, "usable %zu", malloc_usable_size(p));
        CHECKF(malloc_usable_size(q) >= PAGE, "usable %zu", malloc_usable_size(q));
        memset(p, 1, PAGE);
        memset(q, 2, PAGE);
    }
    free(p);
    free(q);
}

/* Frees through every name but free itself keep errno, on each path: a slot of the
 * thread's own span, a large block, and a block another thread allocated (a remote free). */
static void *malloc_in_thread(void *n) { return malloc((size_t)(uintptr_t)n); }
TEST(cfree_and_c23_frees_keep_errno, 0) {
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))lookup("free_sized");
    void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))lookup("free_aligned_sized");
    void (*cf)(void *) = (void (*)(void *))lookup("cfree");
    if (expect_gomalloc) CHECK(fs && fas && cf);
    if (!fs && !fas && !cf) SKIP("none of free_sized, free_aligned_sized, cfree in glibc");
    size_t sizes[] = {1, 64, 5000, 40000, 1 << 20, 16 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        for (int remote = 0; remote < 2; remote++) {
            void *p[3];
            for (int k = 0; k < 3; k++) {
                if (remote) {
                    pthread_t t;
                    CHECK(pthread_create(&t, NULL, malloc_in_thread, (void *)(uintptr_t)sizes[i]) == 0);
                    CHECK(pthread_join(t, &p[k]) == 0);
                } else {
                    p[k] = aligned_alloc(64, sizes[i]);
                }
                CHECK(p[k] != NULL);
            }
            errno = 4321;
            if (cf) cf(p[0]); else free(p[0]);
            CHECKF(errno == 4321, "cfree(%zu B%s): errno %d", sizes[i], remote ? ", remote" : "", errno);
            if (fs) fs(p[1], sizes[i]); else free(p[1]);
            CHECKF(errno == 4321, "free_sized(%zu B%s): errno %d", sizes[i], remote ? ", remote" : "", errno);
            /* A remote block had malloc's alignment (16), which is what is passed. */
            if (fas) fas(p[2], remote ? 16 : 64, sizes[i]); else free(p[2]);
            CHECKF(errno == 4321, "free_aligned_sized(%zu B%s): errno %d", sizes[i], remote ? ", remote" : "", errno);
        }
    }
    errno = 55;
    if (cf) cf(NULL);
    if (fs) fs(NULL, 0);
    if (fas) fas(NULL, 16, 0);
    CHECK(errno == 55);
}

TEST(libc_posix_memalign_enomem, 0) {
    int (*pm)(void **, size_t, size_t) = (int (*)(void **, size_t, size_t))lookup("__posix_memalign");
    if (expect_gomalloc) CHECK(pm != NULL);
    if (!pm) SKIP("__posix_memalign is not in glibc's public symbols");
    size_t bad[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *p = (void *)1;
        int rc = pm(&p, 64, bad[i]);
        CHECKF(rc == ENOMEM && p == (void *)1, "__posix_memalign(64, %zu) = %d, p %p", bad[i], rc, p);
        p = (void *)1;
        rc = pm(&p, 1 << 20, bad[i]);
        CHECKF(rc == ENOMEM && p == (void *)1, "__posix_memalign(1 MiB, %zu) = %d, p %p", bad[i], rc, p);
    }
}

TEST(mallinfo_saturates_at_int_max, T_GOMALLOC_ONLY) {
    /* 3 GiB in use: mallinfo's int fields would wrap to negative values (glibc's do);
     * libgomalloc.so saturates them at INT_MAX. The block is reserved and committed but
     * never touched, so it costs address space, not memory. */
    size_t n = (size_t)3 << 30;
    void *p = malloc(n);
    if (!p) SKIP("no 3 GiB of address space (ulimit -v or strict overcommit)");
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo m = mallinfo();
    CHECKF(m2.uordblks >= n && m2.arena >= n, "mallinfo2: arena %zu, uordblks %zu", m2.arena, m2.uordblks);
    CHECKF(m.arena == INT_MAX && m.uordblks == INT_MAX, "mallinfo: arena %d, uordblks %d", m.arena, m.uordblks);
    CHECK(m.fordblks >= 0 && m.keepcost >= 0 && m.hblkhd >= 0);
    free(p);
}

/* A thread created by C allocates and frees many small objects, then exits: the pthread
 * key destructor must flush its cache, or the spans it holds stay counted in use (a cache's
 * spans count in full in mallinfo2's uordblks, as in Go's heap_alloc) and unusable by
 * other threads. */
enum { CHURN_N = 40000, CHURN_SIZE = 64 };
static void *alloc_free_and_measure(void *out) {
    static void *objs[CHURN_N];
    for (int i = 0; i < CHURN_N; i++) {
        objs[i] = malloc(CHURN_SIZE);
        if (!objs[i]) return NULL;
    }
    for (int i = 0; i < CHURN_N; i++) free(objs[i]);
    *(size_t *)out = mallinfo2().uordblks;
    return out;
}
TEST(thread_caches_are_flushed_at_thread_exit, T_GOMALLOC_ONLY) {
    size_t before = mallinfo2().uordblks, in_thread = 0;
    pthread_t t;
    void *r = NULL;
    CHECK(pthread_create(&t, NULL, alloc_free_and_measure, &in_thread) == 0);
    CHECK(pthread_join(t, &r) == 0 && r != NULL);
    size_t after = mallinfo2().uordblks;
    size_t churn = (size_t)CHURN_N * CHURN_SIZE;
    /* Held by the thread's cache at its end: counted in use. */
    CHECKF(in_thread >= before + churn / 4, "before %zu, in the thread after its frees %zu", before, in_thread);
    /* Flushed at its exit: back to (about) the count before. */
    CHECKF(after <= before + churn / 16, "before %zu, after the thread exited %zu", before, after);
}
