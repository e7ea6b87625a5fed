/* A shared object with dynamic (global-dynamic) TLS, loaded many times under different
 * names by tls_dlopen.c. */
__thread char tls_buf[512];
__thread long tls_counter;

long tls_touch(void) {
    tls_buf[tls_counter % 512]++;
    return ++tls_counter;
}
