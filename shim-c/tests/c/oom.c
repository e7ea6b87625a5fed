/* Out of memory under real limits (issue 6): under `ulimit -v` (RLIMIT_AS) and under a data
 * limit (RLIMIT_DATA), every allocating function returns NULL with errno ENOMEM
 * (posix_memalign returns ENOMEM), a failed realloc leaves the old block intact, and once
 * the blocks are freed (and malloc_trim'med) as many can be allocated again. Runs on glibc
 * first like every test; each test is its own child, so the limit ends with it.
 *
 * RLIMIT_DATA and gomalloc (docs/HARDENING.md, "Out of memory"): pages gomalloc gives back
 * with MADV_DONTNEED stay mapped read-write, so they still count against RLIMIT_DATA (VmData
 * does not drop after free + malloc_trim). Its own later allocations reuse them, which is
 * what this test checks; memory mapped by someone else (a thread stack, another allocator)
 * does not get that room back. The test prints VmData before and after the trim. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/resource.h>

enum { MAX_BLOCKS = 4096, BLOCK = 1 << 20 };
static void *blocks[MAX_BLOCKS];

/* A field of /proc/self/status in bytes ("VmSize:", "VmData:"). */
static size_t status_bytes(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0) kib = strtoull(line + strlen(field), NULL, 10);
    fclose(f);
    CHECK(kib > 0);
    return kib << 10;
}

/* 1 MiB blocks until malloc fails; each is touched on its first and last byte. */
static int fill_until_null(void) {
    int n = 0;
    for (; n < MAX_BLOCKS; n++) {
        errno = 0;
        void *p = malloc(BLOCK);
        if (p == NULL) {
            CHECKF(errno == ENOMEM, "malloc failed with errno %d", errno);
            return n;
        }
        ((char *)p)[0] = (char)n;
        ((char *)p)[BLOCK - 1] = (char)n;
        blocks[n] = p;
    }
    CHECKF(0, "%d blocks of 1 MiB never ran out under the limit", n);
    return n;
}

static void free_blocks(int n) {
    for (int i = 0; i < n; i++) {
        CHECKF(((char *)blocks[i])[0] == (char)i && ((char *)blocks[i])[BLOCK - 1] == (char)i,
               "block %d overwritten", i);
        free(blocks[i]);
    }
}

static void exhaust_and_recover(int resource, const char *field, size_t room, const char *what) {
    struct rlimit r = {0, 0};
    r.rlim_cur = r.rlim_max = status_bytes(field) + room;
    CHECK(setrlimit(resource, &r) == 0);

    int got = fill_until_null();
    CHECKF(got > 0, "%s: not even one 1 MiB block", what);
    /* Out of memory now: every allocating function fails cleanly. */
    errno = 0;
    CHECK(calloc(1, 64 << 20) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(4096, 64 << 20) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(memalign(1 << 20, 64 << 20) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(valloc(64 << 20) == NULL && errno == ENOMEM);
    void *q = (void *)7;
    CHECK(posix_memalign(&q, 4096, 64 << 20) == ENOMEM && q == (void *)7);
    errno = 0;
    CHECK(realloc(blocks[0], 64 << 20) == NULL && errno == ENOMEM);
    /* The failed realloc left block 0 as it was (free_blocks checks it). */
    free_blocks(got);
    size_t data_before = status_bytes("VmData:");
    malloc_trim(0);
    size_t data_after = status_bytes("VmData:");

    int again = fill_until_null();
    CHECKF(again >= got * 9 / 10, "%s: %d blocks before, only %d after freeing", what, got, again);
    free_blocks(again);
    fprintf(stderr, "    %s: %d blocks of 1 MiB, %d again after free; VmData %zu MiB before "
            "malloc_trim, %zu MiB after\n", what, got, again, data_before >> 20, data_after >> 20);
}

TEST(oom_under_ulimit_v_null_enomem_and_recovery, 0) {
    exhaust_and_recover(RLIMIT_AS, "VmSize:", 512u << 20, "ulimit -v");
}

TEST(oom_under_data_limit_null_enomem_and_recovery, 0) {
    exhaust_and_recover(RLIMIT_DATA, "VmData:", 256u << 20, "RLIMIT_DATA");
}
