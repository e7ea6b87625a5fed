/* glibc's own allocations (strdup, stdio, qsort, regex, NSS, ...) come from the preloaded
 * malloc and are released with the preloaded free: any mix-up aborts. */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <glob.h>
#include <locale.h>
#include <netdb.h>
#include <pwd.h>
#include <regex.h>
#include <string.h>
#include <wchar.h>
#include <unistd.h>

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int all_entries(const struct dirent *d) { (void)d; return 1; }

TEST(glibc_internal_allocations_are_ours, 0) {
    for (int round = 0; round < 20; round++) {
        char *s = strdup("hello, world");
        CHECK(s && strcmp(s, "hello, world") == 0);
        free(s);
        s = strndup("abcdef", 3);
        CHECK(s && strcmp(s, "abc") == 0);
        free(s);
        wchar_t *w = wcsdup(L"wide");
        CHECK(w != NULL);
        free(w);
        CHECK(asprintf(&s, "%d-%s-%f", round, "x", 1.5) > 0);
        free(s);

        char *buf = NULL;
        size_t cap = 0;
        FILE *f = fmemopen("line one\nline two\n", 18, "r");
        CHECK(f != NULL);
        CHECK(getline(&buf, &cap, f) == 9);
        CHECK(getline(&buf, &cap, f) == 9);
        fclose(f);
        free(buf);

        size_t len;
        f = open_memstream(&buf, &len);
        for (int i = 0; i < 10000; i++) fprintf(f, "%d,", i);
        fclose(f);
        CHECK(len > 10000);
        free(buf);

        enum { N = 200000 };
        int *v = malloc(N * sizeof *v);
        for (int i = 0; i < N; i++) v[i] = (i * 7919) % N;
        qsort(v, N, sizeof *v, cmp_int); /* merge sort: mallocs a temporary array */
        for (int i = 0; i < N; i++) CHECK(v[i] == i);
        free(v);

        regex_t re;
        CHECK(regcomp(&re, "^([a-z]+)@([a-z]+)\\.(com|org)$", REG_EXTENDED) == 0);
        regmatch_t m[4];
        CHECK(regexec(&re, "user@example.org", 4, m, 0) == 0);
        regfree(&re);

        char *rp = realpath(".", NULL);
        CHECK(rp != NULL);
        free(rp);
        char *cwd = getcwd(NULL, 0);
        CHECK(cwd != NULL);
        free(cwd);

        struct dirent **names;
        int n = scandir("/", &names, all_entries, alphasort);
        CHECK(n > 0);
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);

        glob_t g;
        CHECK(glob("/etc/*", 0, NULL, &g) == 0);
        globfree(&g);

        struct passwd *pw = getpwuid(0);
        CHECK(pw != NULL && strcmp(pw->pw_name, "root") == 0);

        struct addrinfo hints = {0}, *ai = NULL;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo("localhost", "80", &hints, &ai) == 0) freeaddrinfo(ai);

        CHECK(setlocale(LC_ALL, "C.UTF-8") != NULL || setlocale(LC_ALL, "C") != NULL);
        setlocale(LC_ALL, "C");
    }
}
