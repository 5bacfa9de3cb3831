/* Counts heap calls of the process it is preloaded into; on SIGUSR2 writes the
   counts to $MALLOC_COUNT_FILE (via a temporary file and rename, so a reader
   never sees half a file). Built and preloaded by bench/allocations.sh. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong n_malloc, n_calloc, n_realloc, n_free, n_aligned;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

/* dlsym may allocate (calloc) while we resolve: serve that from a static
   arena, which is zeroed, never freed and never counted. */
static char arena[16384] __attribute__((aligned(64)));
static atomic_size_t arena_used;
static atomic_int resolving;

static void *arena_alloc(size_t size) {
    size_t need = (size + 63) & ~(size_t)63;
    size_t offset = atomic_fetch_add(&arena_used, need);
    return offset + need <= sizeof arena ? arena + offset : NULL;
}
static int in_arena(const void *p) {
    return (const char *)p >= arena && (const char *)p < arena + sizeof arena;
}

static void resolve(void) {
    atomic_store(&resolving, 1);
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");   /* last: it marks "resolved" */
    atomic_store(&resolving, 0);
}
#define READY(fn) (fn != NULL || (!atomic_load(&resolving) && (resolve(), fn != NULL)))
#define COUNT(counter) atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed)

void *malloc(size_t size) {
    if (!READY(real_malloc)) return arena_alloc(size);
    COUNT(n_malloc);
    return real_malloc(size);
}
void *calloc(size_t n, size_t size) {
    if (!READY(real_calloc)) return size && n > (size_t)-1 / size ? NULL : arena_alloc(n * size);
    COUNT(n_calloc);
    return real_calloc(n, size);
}
void *realloc(void *p, size_t size) {
    if (!READY(real_realloc)) return NULL;
    if (in_arena(p)) {   /* move out of the arena; the old size is unknown, copy what can exist */
        void *q = malloc(size);
        size_t room = (size_t)(arena + sizeof arena - (char *)p);
        if (q) memcpy(q, p, size < room ? size : room);
        return q;
    }
    COUNT(n_realloc);
    return real_realloc(p, size);
}
void free(void *p) {
    if (p == NULL || in_arena(p)) return;
    if (!READY(real_free)) return;
    COUNT(n_free);
    real_free(p);
}
int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!READY(real_posix_memalign)) return ENOMEM;
    COUNT(n_aligned);
    return real_posix_memalign(out, alignment, size);
}
void *aligned_alloc(size_t alignment, size_t size) {
    if (!READY(real_aligned_alloc)) return NULL;
    COUNT(n_aligned);
    return real_aligned_alloc(alignment, size);
}
void *memalign(size_t alignment, size_t size) {
    if (!READY(real_memalign)) return NULL;
    COUNT(n_aligned);
    return real_memalign(alignment, size);
}

static char out_path[4096], tmp_path[4100];

static size_t put(char *buf, size_t at, const char *name, unsigned long value) {
    char digits[24];
    int n = 0;
    while (*name) buf[at++] = *name++;
    buf[at++] = ' ';
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value);
    while (n) buf[at++] = digits[--n];
    buf[at++] = '\n';
    return at;
}

/* Async-signal-safe: no stdio, no allocation. */
static void dump(int sig) {
    char buf[256];
    size_t len = 0;
    int saved = errno, fd;
    (void)sig;
    len = put(buf, len, "malloc", atomic_load(&n_malloc));
    len = put(buf, len, "calloc", atomic_load(&n_calloc));
    len = put(buf, len, "realloc", atomic_load(&n_realloc));
    len = put(buf, len, "free", atomic_load(&n_free));
    len = put(buf, len, "aligned", atomic_load(&n_aligned));
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, len);
        close(fd);
        if (w == (ssize_t)len) rename(tmp_path, out_path);
    }
    errno = saved;
}

__attribute__((constructor)) static void install(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    struct sigaction action;
    if (path == NULL || *path == 0 || strlen(path) >= sizeof out_path) return;
    strcpy(out_path, path);
    strcpy(tmp_path, path);
    strcat(tmp_path, ".tmp");
    memset(&action, 0, sizeof action);
    action.sa_handler = dump;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, NULL);
}
