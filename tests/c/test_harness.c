/*
 * test_harness.c: the harness of the C tests (test_util.h) counts tests, not checks.
 *
 * A child process makes known checks: 1,000 in a thread, several in helpers called from
 * two sections, one of them failing, and ends with tu_finish into a pipe. The parent
 * checks what the child printed and its exit status: the failed test is named by its
 * section and function, the checks are counted apart, and the last line counts the
 * tests ("5 passed, 1 failed"), so that a runner reading it reports tests.
 */
#include "test_util.h"

#include <sys/wait.h>

static void *child_thread(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < 1000; i++)
        CHECK(i >= 0);
    return NULL;
}

static void child_helper(int x)
{
    CHECK(x == 1);
}

static void child_first(void)
{
    TU_SECTION("first");
    CHECK(1);
    CHECK_STR("x", "x");
    child_helper(1);
}

static void child_second(void)
{
    pthread_t t;
    TU_SECTION("second");
    CHECK_OK(EVS_OK);
    child_helper(2); /* the one failing check */
    if (pthread_create(&t, NULL, child_thread, NULL) == 0)
        pthread_join(t, NULL);
}

/* Tests: main's check before any section; under "first": child_first, child_helper;
 * under "second": child_second, child_helper (failed), child_thread. */
static int child_main(void)
{
    CHECK(1);
    child_first();
    child_second();
    return tu_finish();
}

/* Runs child_main in a child process; its stdout into `out`, its exit status back. */
static int run_child(char *out, size_t cap, int *status)
{
    int fds[2];
    pid_t pid;
    size_t n = 0;
    ssize_t got;
    if (pipe(fds) != 0)
        return 0;
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        _exit(child_main());
    }
    close(fds[1]);
    while (n + 1 < cap && (got = read(fds[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)got;
    out[n] = '\0';
    close(fds[0]);
    return waitpid(pid, status, 0) == pid;
}

int main(void)
{
    char out[8192];
    int status = 0;
    const char *last;
    int ran = run_child(out, sizeof out, &status);
    TU_SECTION("a program's last line counts its tests; its failed tests are named");
    if (!CHECK(ran))
        return tu_finish();
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    CHECK(strstr(out, "CHECK failed: x == 1") != NULL);
    CHECK(strstr(out, "FAILED test: second / child_helper\n") != NULL);
    CHECK(strstr(out, "FAILED test: first") == NULL);
    CHECK(strstr(out, "(1006 checks in 6 tests; 1 checks failed)\n") != NULL);
    /* the last line */
    last = out + strlen(out);
    if (last > out)
        last--;
    while (last > out && last[-1] != '\n')
        last--;
    CHECK_STR(last, "5 passed, 1 failed\n");
    if (tu_failures() != 0)
        printf("the child printed:\n%s", out);
    return tu_finish();
}
