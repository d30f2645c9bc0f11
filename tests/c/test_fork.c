/*
 * test_fork.c: a child process made by fork() without exec must not write through the
 * parent's store (issue 11, defect 9). Before the fix the child's appends went through
 * the inherited lock and overwrote the parent's events, and its evs_close panicked.
 *
 * The parent opens a store and appends 10 events, then forks. The child: appending to
 * the inherited handle fails with EVS_ERR_INVALID_ARGUMENT naming both process ids, so
 * does evs_sync, and evs_close; reading the inherited handle fails the same way; a store
 * of its own opens, takes appends and closes. The parent, after the child is done,
 * appends 10 more, closes, reopens: exactly its 20 events, in order.
 *
 * Prints `N passed, N failed`.
 */
#include "test_util.h"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void append_n(evs_store *s, const char *stream, int from, int n)
{
    char payload[32];
    for (int i = from; i < from + n; i++) {
        snprintf(payload, sizeof payload, "parent-%d", i);
        evs_event_input ev = EVS_STRUCT_INIT(evs_event_input);
        ev.event_type = "Noted";
        ev.payload = (const uint8_t *)payload;
        ev.payload_len = strlen(payload);
        CHECK_OK(evs_append(s, stream, EVS_EXPECT_ANY, &ev, 1, NULL, NULL));
    }
}

/* The child's checks; returns its exit status (0: all held). */
static int child(evs_store *inherited, const char *own_path)
{
    int bad = 0;
    char pid[48], parent[48];
    evs_event_input ev = EVS_STRUCT_INIT(evs_event_input);
    ev.event_type = "Child";
    ev.payload = (const uint8_t *)"child";
    ev.payload_len = 5;
    /* the message names both: the process that opened the store and this one */
    snprintf(pid, sizeof pid, "process %ld (", (long)getpid());
    snprintf(parent, sizeof parent, "process %ld,", (long)getppid());

    evs_status st = evs_append(inherited, "s", EVS_EXPECT_ANY, &ev, 1, NULL, NULL);
    bad |= st != EVS_ERR_INVALID_ARGUMENT;
    bad |= strstr(evs_last_error_message(), pid) == NULL;
    bad |= strstr(evs_last_error_message(), parent) == NULL;
    bad |= evs_sync(inherited) != EVS_ERR_INVALID_ARGUMENT;
    evs_cursor *c = NULL;
    bad |= evs_read_all(inherited, 0, &c) != EVS_ERR_INVALID_ARGUMENT;

    evs_store *own = NULL;
    if (evs_open(own_path, NULL, &own, NULL) != EVS_OK)
        return 10;
    for (int i = 0; i < 5; i++)
        bad |= evs_append(own, "mine", EVS_EXPECT_ANY, &ev, 1, NULL, NULL) != EVS_OK;
    bad |= evs_close(own) != EVS_OK;

    bad |= evs_close(inherited) != EVS_ERR_INVALID_ARGUMENT;
    return bad ? 20 : 0;
}

int main(void)
{
    char root[1024], path[1100], own[1100];
    evs_store *s = NULL;
    if (!tu_make_temp_dir(root, sizeof root))
        return tu_finish();
    tu_store_location(path, sizeof path, root, "parent-store");
    tu_store_location(own, sizeof own, root, "child-store");

    TU_SECTION("a forked child cannot write through the parent's store");
    if (!CHECK_OK(evs_open(path, NULL, &s, NULL)))
        return tu_finish();
    append_n(s, "s", 0, 10);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child(s, own));
    CHECK(pid > 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK_I64(WEXITSTATUS(status), 0);

    append_n(s, "s", 10, 10);
    CHECK_OK(evs_close(s));

    TU_SECTION("after reopening, the parent's events are all there and nothing else");
    s = NULL;
    if (!CHECK_OK(evs_open(path, NULL, &s, NULL)))
        return tu_finish();
    evs_cursor *c = NULL;
    CHECK_OK(evs_read_all(s, 0, &c));
    evs_event e = EVS_STRUCT_INIT(evs_event);
    int n = 0;
    char want[32];
    while (evs_cursor_next(c, &e) == EVS_OK) {
        snprintf(want, sizeof want, "parent-%d", n);
        CHECK_MEM(e.payload, e.payload_len, want, strlen(want));
        n++;
    }
    CHECK_I64(n, 20);
    evs_cursor_free(c);
    CHECK_OK(evs_close(s));

    TU_SECTION("the child's own store holds its 5 events");
    s = NULL;
    if (CHECK_OK(evs_open(own, NULL, &s, NULL))) {
        int64_t version = -9;
        CHECK_OK(evs_stream_version(s, "mine", &version));
        CHECK_I64(version, 4);
        CHECK_OK(evs_close(s));
    }
    tu_cleanup_dir(root);
    return tu_finish();
}
