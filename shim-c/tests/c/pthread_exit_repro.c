/* Issue 16's reproduction, verbatim: the main thread allocates 4000 x 16 KiB, frees half and
 * ends with pthread_exit. glibc ends the process with exit(0) once its last thread is gone;
 * a thread the preloaded allocator started must not keep it alive. Expected: prints the
 * line and exits 0 at once (run-process-life.sh runs it under `timeout`). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
int main(void) {
  for (int i = 0; i < 4000; i++) { void *p = malloc(16384); memset(p, 1, 16384); if (i % 2) free(p); }
  puts("main: pthread_exit"); fflush(stdout);
  pthread_exit(0);   /* glibc, mimalloc, jemalloc: the process exits 0; gomalloc: it never exits */
}
