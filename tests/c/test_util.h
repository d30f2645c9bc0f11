/*
 * test_util.h: a tiny assertion harness for the evstore C tests.
 *
 * Every CHECK is one check, made by a test. A test is the checks one function makes
 * under one section heading (TU_SECTION; a function's checks before any heading form a
 * test of their own): e.g. test_open's checks under "evs_open / evs_sync / evs_close",
 * or a thread function's checks under the section that started the thread. A test
 * passes when all its checks pass. A failing check prints file:line, what was checked,
 * and (for status checks) the status names and evs_last_error_message(). Each program
 * ends with `return tu_finish();`, which names the failed tests, prints the number of
 * checks, and then exactly one line `N passed, N failed` counting TESTS (not checks),
 * and returns non-zero on any failure. The counters are guarded by a mutex, so CHECKs
 * may be used from several threads.
 *
 * With EVS_TEST_PG_URL set (a postgresql:// URL without a query), the programs run
 * against PostgreSQL: tu_store_location gives each store a URL with its own schema, and
 * the parts that only make sense on the file store (its files and folders) call
 * tu_skip_on_pg, which prints why and counts a skip (never a pass). tu_finish then also
 * prints a line `N skipped` before the summary.
 *
 * Compile with -std=c99 -D_POSIX_C_SOURCE=200809L (for mkdtemp and lstat).
 */
#ifndef EVS_TEST_UTIL_H
#define EVS_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"

static pthread_mutex_t tu_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long tu_passed = 0; /* checks */
static unsigned long tu_failed = 0; /* checks */
static unsigned long tu_skipped = 0;

/* The tests seen so far: (function, section) pairs, in the order of their first check. */
typedef struct tu_test {
    const char *func;  /* __func__ of the checking function: static storage */
    char *section;     /* a copy of the section heading ("" before the first) */
    int failed;
} tu_test;
static tu_test *tu_tests = NULL;
static size_t tu_ntests = 0, tu_captests = 0;
static char tu_section_now[256] = "";
static unsigned long tu_section_gen = 0;     /* bumped by every TU_SECTION */
static size_t tu_last_test = (size_t)-1;     /* the test of the last check ... */
static unsigned long tu_last_gen = 0;        /* ... and the section generation then */

/* The test that a check made by `func` now belongs to; called with tu_lock held.
 * Returns (size_t)-1 only when memory runs out. */
static inline size_t tu_test_of(const char *func)
{
    size_t i;
    char *copy;
    if (tu_last_test != (size_t)-1 && tu_last_gen == tu_section_gen &&
        tu_tests[tu_last_test].func == func)
        return tu_last_test;
    for (i = 0; i < tu_ntests; i++)
        if (tu_tests[i].func == func && strcmp(tu_tests[i].section, tu_section_now) == 0)
            break;
    if (i == tu_ntests) {
        if (tu_ntests == tu_captests) {
            size_t cap = tu_captests ? 2 * tu_captests : 64;
            tu_test *grown = (tu_test *)realloc(tu_tests, cap * sizeof *grown);
            if (grown == NULL)
                return (size_t)-1;
            tu_tests = grown;
            tu_captests = cap;
        }
        copy = (char *)malloc(strlen(tu_section_now) + 1);
        if (copy == NULL)
            return (size_t)-1;
        strcpy(copy, tu_section_now);
        tu_tests[i].func = func;
        tu_tests[i].section = copy;
        tu_tests[i].failed = 0;
        tu_ntests++;
    }
    tu_last_test = i;
    tu_last_gen = tu_section_gen;
    return i;
}

/* Counts one check made by `func` (use tu_count(ok), which passes the caller's __func__). */
static inline void tu_count_at(const char *func, int ok)
{
    size_t t;
    pthread_mutex_lock(&tu_lock);
    if (ok)
        tu_passed++;
    else
        tu_failed++;
    t = tu_test_of(func);
    if (t == (size_t)-1) {
        printf("test_util.h: out of memory counting the tests of %s\n", func);
        tu_failed++;
    } else if (!ok) {
        tu_tests[t].failed = 1;
    }
    pthread_mutex_unlock(&tu_lock);
}
#define tu_count(ok) tu_count_at(__func__, (ok))

/* Checks failed so far (not tests). */
static inline unsigned long tu_failures(void)
{
    unsigned long n;
    pthread_mutex_lock(&tu_lock);
    n = tu_failed;
    pthread_mutex_unlock(&tu_lock);
    return n;
}

/* A printable status name even for codes the library does not know. */
static inline const char *tu_name(evs_status st)
{
    const char *n = evs_status_name(st);
    return n ? n : "(NULL name)";
}

static inline const char *tu_msg(void)
{
    const char *m = evs_last_error_message();
    return m ? m : "(NULL message)";
}

static inline int tu_check_at(const char *func, int ok, const char *what, const char *file, int line)
{
    tu_count_at(func, ok);
    if (!ok) {
        pthread_mutex_lock(&tu_lock);
        printf("%s:%d: CHECK failed: %s (this thread's last error message: \"%s\")\n",
               file, line, what, tu_msg());
        fflush(stdout);
        pthread_mutex_unlock(&tu_lock);
    }
    return ok;
}

/* The status must equal `want`; for an error (want < 0) the thread's last error
 * message must also be non-empty. The message is read before any other call. */
static inline int tu_check_status_at(const char *func, evs_status got, evs_status want, const char *expr,
                                  const char *file, int line)
{
    const char *msg = evs_last_error_message();
    int msg_ok = want >= 0 || (msg != NULL && msg[0] != '\0');
    int ok = got == want && msg_ok;
    tu_count_at(func, ok);
    if (!ok) {
        pthread_mutex_lock(&tu_lock);
        if (got != want)
            printf("%s:%d: %s: expected %s (%d), got %s (%d); last error message: \"%s\"\n",
                   file, line, expr, tu_name(want), (int)want, tu_name(got), (int)got,
                   msg ? msg : "(NULL)");
        else
            printf("%s:%d: %s: got %s as expected, but evs_last_error_message() is %s\n",
                   file, line, expr, tu_name(got), msg ? "empty" : "NULL");
        fflush(stdout);
        pthread_mutex_unlock(&tu_lock);
    }
    return ok;
}

static inline int tu_check_u64_at(const char *func, uint64_t got, uint64_t want, const char *expr,
                               const char *file, int line)
{
    int ok = got == want;
    tu_count_at(func, ok);
    if (!ok) {
        pthread_mutex_lock(&tu_lock);
        printf("%s:%d: %s: expected %" PRIu64 ", got %" PRIu64
               " (this thread's last error message: \"%s\")\n",
               file, line, expr, want, got, tu_msg());
        fflush(stdout);
        pthread_mutex_unlock(&tu_lock);
    }
    return ok;
}

static inline int tu_check_i64_at(const char *func, int64_t got, int64_t want, const char *expr,
                               const char *file, int line)
{
    int ok = got == want;
    tu_count_at(func, ok);
    if (!ok) {
        pthread_mutex_lock(&tu_lock);
        printf("%s:%d: %s: expected %" PRId64 ", got %" PRId64
               " (this thread's last error message: \"%s\")\n",
               file, line, expr, want, got, tu_msg());
        fflush(stdout);
        pthread_mutex_unlock(&tu_lock);
    }
    return ok;
}

static inline int tu_check_str_at(const char *func, const char *got, const char *want, const char *expr,
                               const char *file, int line)
{
    int ok = got != NULL && want != NULL && strcmp(got, want) == 0;
    tu_count_at(func, ok);
    if (!ok) {
        pthread_mutex_lock(&tu_lock);
        printf("%s:%d: %s: expected \"%s\", got %s%s%s\n", file, line, expr,
               want ? want : "(NULL)", got ? "\"" : "", got ? got : "NULL", got ? "\"" : "");
        fflush(stdout);
        pthread_mutex_unlock(&tu_lock);
    }
    return ok;
}

/* Bytes (ptr, len) must equal (want, want_len). ptr may be NULL only when len is 0. */
static inline int tu_check_mem_at(const char *func, const void *ptr, size_t len, const void *want, size_t want_len,
                               const char *expr, const char *file, int line)
{
    int ok = len == want_len && (len == 0 || (ptr != NULL && memcmp(ptr, want, len) == 0));
    tu_count_at(func, ok);
    if (!ok) {
        pthread_mutex_lock(&tu_lock);
        printf("%s:%d: %s: expected %zu bytes \"%.*s\", got %zu bytes \"%.*s\"\n", file, line,
               expr, want_len, (int)(want_len > 200 ? 200 : want_len), (const char *)want, len,
               (int)(ptr == NULL ? 0 : (len > 200 ? 200 : len)), ptr ? (const char *)ptr : "");
        fflush(stdout);
        pthread_mutex_unlock(&tu_lock);
    }
    return ok;
}

/* The check functions, each passing the caller's __func__ (which names the test). */
#define tu_check(ok, what, file, line) tu_check_at(__func__, (ok), (what), (file), (line))
#define tu_check_status(got, want, expr, file, line) \
    tu_check_status_at(__func__, (got), (want), (expr), (file), (line))
#define tu_check_u64(got, want, expr, file, line) \
    tu_check_u64_at(__func__, (got), (want), (expr), (file), (line))
#define tu_check_i64(got, want, expr, file, line) \
    tu_check_i64_at(__func__, (got), (want), (expr), (file), (line))
#define tu_check_str(got, want, expr, file, line) \
    tu_check_str_at(__func__, (got), (want), (expr), (file), (line))
#define tu_check_mem(ptr, len, want, want_len, expr, file, line) \
    tu_check_mem_at(__func__, (ptr), (len), (want), (want_len), (expr), (file), (line))

#define CHECK(cond) tu_check((cond) != 0, #cond, __FILE__, __LINE__)
#define CHECK_OK(expr) tu_check_status((expr), EVS_OK, #expr, __FILE__, __LINE__)
#define CHECK_STATUS(expr, want) tu_check_status((expr), (want), #expr, __FILE__, __LINE__)
#define CHECK_U64(got, want) \
    tu_check_u64((uint64_t)(got), (uint64_t)(want), #got " == " #want, __FILE__, __LINE__)
#define CHECK_I64(got, want) \
    tu_check_i64((int64_t)(got), (int64_t)(want), #got " == " #want, __FILE__, __LINE__)
#define CHECK_STR(got, want) tu_check_str((got), (want), #got " == " #want, __FILE__, __LINE__)
#define CHECK_MEM(ptr, len, want, want_len) \
    tu_check_mem((ptr), (len), (want), (want_len), #ptr " == " #want, __FILE__, __LINE__)
/* a NUL-terminated expected string against a (ptr, len) view */
#define CHECK_VIEW(ptr, len, want) \
    tu_check_mem((ptr), (len), (want), strlen(want), #ptr " == " #want, __FILE__, __LINE__)

/* Starts a section: prints its heading (to stdout, before the summary line); the checks
 * made from here on belong to the tests of this section. */
static inline void tu_section(const char *name)
{
    pthread_mutex_lock(&tu_lock);
    snprintf(tu_section_now, sizeof tu_section_now, "%s", name ? name : "");
    tu_section_gen++;
    printf("-- %s\n", tu_section_now);
    fflush(stdout);
    pthread_mutex_unlock(&tu_lock);
}
#define TU_SECTION(name) tu_section(name)

/* Names the failed tests, prints the number of checks and `N skipped` (when some parts
 * were skipped, tu_skip_on_pg), then `N passed, N failed` counting tests: the program's
 * last line. Returns non-zero when anything failed. */
static inline int tu_finish(void)
{
    size_t i;
    unsigned long tests = (unsigned long)tu_ntests, tests_failed = 0;
    pthread_mutex_lock(&tu_lock);
    for (i = 0; i < tu_ntests; i++) {
        if (!tu_tests[i].failed)
            continue;
        tests_failed++;
        printf("FAILED test: %s%s%s\n", tu_tests[i].section, tu_tests[i].section[0] ? " / " : "",
               tu_tests[i].func);
    }
    /* a failure counted outside every test (memory ran out counting) is one more */
    if (tests_failed == 0 && tu_failed > 0) {
        tests++;
        tests_failed++;
    }
    printf("(%lu checks in %lu tests; %lu checks failed)\n", tu_passed + tu_failed, tests, tu_failed);
    if (tu_skipped > 0)
        printf("%lu skipped\n", tu_skipped);
    printf("%lu passed, %lu failed\n", tests - tests_failed, tests_failed);
    fflush(stdout);
    pthread_mutex_unlock(&tu_lock);
    return tu_failed ? 1 : 0;
}

/* EVS_TEST_SCALE (default 1.0) scales the counts of the long tests. */
static inline double tu_scale(void)
{
    const char *s = getenv("EVS_TEST_SCALE");
    double v;
    if (s == NULL || *s == '\0')
        return 1.0;
    v = strtod(s, NULL);
    return v > 0.0 ? v : 1.0;
}

static inline long tu_scaled(long n)
{
    double v = (double)n * tu_scale();
    return v < 1.0 ? 1 : (long)v;
}

/* ---- temporary directories ---- */

/* Creates a fresh directory $TMPDIR/evstore-test-XXXXXX (or under /tmp) into out. */
static inline int tu_make_temp_dir(char *out, size_t cap)
{
    const char *base = getenv("TMPDIR");
    int n;
    if (base == NULL || *base == '\0')
        base = "/tmp";
    n = snprintf(out, cap, "%s/evstore-test-XXXXXX", base);
    if (n < 0 || (size_t)n >= cap) {
        tu_check(0, "temporary directory path fits", __FILE__, __LINE__);
        return 0;
    }
    if (mkdtemp(out) == NULL) {
        printf("mkdtemp(%s) failed: %s\n", out, strerror(errno));
        tu_check(0, "mkdtemp", __FILE__, __LINE__);
        return 0;
    }
    return 1;
}

/* Removes path and everything below it (does not follow symbolic links). */
static inline int tu_remove_tree(const char *path)
{
    struct stat st;
    int rc = 0;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        if (d == NULL)
            return -1;
        while ((e = readdir(d)) != NULL) {
            size_t len;
            char *child;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            len = strlen(path) + strlen(e->d_name) + 2;
            child = (char *)malloc(len);
            if (child == NULL) {
                rc = -1;
                continue;
            }
            snprintf(child, len, "%s/%s", path, e->d_name);
            if (tu_remove_tree(child) != 0)
                rc = -1;
            free(child);
        }
        closedir(d);
        if (rmdir(path) != 0)
            rc = -1;
    } else if (unlink(path) != 0) {
        rc = -1;
    }
    return rc;
}

/* Removes a test directory, unless EVS_TEST_KEEP is set (then it says where it is). */
static inline void tu_cleanup_dir(const char *dir)
{
    const char *keep = getenv("EVS_TEST_KEEP");
    if (keep != NULL && *keep != '\0') {
        printf("kept %s (EVS_TEST_KEEP)\n", dir);
        return;
    }
    if (tu_remove_tree(dir) != 0)
        printf("could not remove %s completely\n", dir);
}

/* out = dir + "/" + name */
static inline void tu_join(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* ---- the PostgreSQL mode (EVS_TEST_PG_URL) ---- */

/* The server URL when the tests run against PostgreSQL, else NULL. */
static inline const char *tu_pg_url(void)
{
    const char *url = getenv("EVS_TEST_PG_URL");
    return url != NULL && *url != '\0' ? url : NULL;
}

static inline int tu_pg(void)
{
    return tu_pg_url() != NULL;
}

/* Where the store `name` of a test lives: dir/name on the file store; on PostgreSQL the
 * server URL with the schema t_<64-bit FNV-1a hash of dir/name, in hex>. The same dir and
 * name give the same location (a reopen), dir is unique per run (mkdtemp), so each store
 * of each run has a fresh schema. */
static inline void tu_store_location(char *out, size_t cap, const char *dir, const char *name)
{
    const char *url = tu_pg_url();
    char path[4096];
    const unsigned char *p;
    uint64_t h = UINT64_C(14695981039346656037);
    if (url == NULL) {
        tu_join(out, cap, dir, name);
        return;
    }
    tu_join(path, sizeof path, dir, name);
    for (p = (const unsigned char *)path; *p != '\0'; p++) {
        h ^= *p;
        h *= UINT64_C(1099511628211);
    }
    snprintf(out, cap, "%s%sschema=t_%016" PRIx64, url, strchr(url, '?') ? "&" : "?", h);
}

/* On PostgreSQL: prints `SKIP (PostgreSQL) what: why`, counts one skip and returns 1 (the
 * caller leaves out the file-specific part). On the file store: returns 0. */
static inline int tu_skip_on_pg(const char *what, const char *why)
{
    if (!tu_pg())
        return 0;
    pthread_mutex_lock(&tu_lock);
    tu_skipped++;
    printf("SKIP (PostgreSQL) %s: %s\n", what, why);
    fflush(stdout);
    pthread_mutex_unlock(&tu_lock);
    return 1;
}

static inline void tu_sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Wall clock in microseconds since the Unix epoch. */
static inline uint64_t tu_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A small deterministic PRNG (xorshift64*), one state per thread. */
static inline uint64_t tu_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

#endif /* EVS_TEST_UTIL_H */
