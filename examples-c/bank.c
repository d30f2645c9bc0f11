/* The reference program's bank example, in C over evstore's public API:
 * open alice with 1000, deposit 500, withdraw 200, show a refused withdrawal,
 * close, reopen and print the recovered balance. Usage: bank [store-dir] */
#include <evstore.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, evs_status s) {
    fprintf(stderr, "%s failed: %s: %s\n", what, evs_status_name(s), evs_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "bank-store";
    evs_store *store = NULL;
    evs_recovery_info info = EVS_STRUCT_INIT(evs_recovery_info);
    evs_status s = evs_open(path, NULL, &store, &info);
    if (s != EVS_OK) return fail("evs_open", s);
    printf("evstore %s: opened %s (%" PRIu64 " events)\n", evs_version(), path, info.next_position);

    uint64_t pos = 0;
    s = evs_account_open(store, "alice", 1000, "USD", &pos);
    if (s == EVS_ERR_ALREADY_EXISTS) {
        printf("alice exists already (%s)\n", evs_last_error_message());
    } else if (s != EVS_OK) {
        return fail("evs_account_open", s);
    } else {
        printf("opened alice with 1000 at position %" PRIu64 "\n", pos);
    }
    if ((s = evs_account_deposit(store, "alice", 500, &pos)) != EVS_OK) return fail("deposit", s);
    printf("deposited 500 at position %" PRIu64 "\n", pos);
    if ((s = evs_account_withdraw(store, "alice", 200, &pos)) != EVS_OK) return fail("withdraw", s);
    printf("withdrew 200 at position %" PRIu64 "\n", pos);
    if ((s = evs_sync(store)) != EVS_OK) return fail("evs_sync", s);

    evs_account acct = EVS_STRUCT_INIT(evs_account);
    if ((s = evs_account_get(store, "alice", &acct)) != EVS_OK) return fail("get", s);
    printf("alice: balance %" PRId64 " %s after %" PRIu64 " events\n", acct.balance, acct.currency, acct.version);

    s = evs_account_withdraw(store, "alice", 1000000, NULL);
    printf("withdrawing 1000000: %s: %s\n", evs_status_name(s), evs_last_error_message());
    if (s != EVS_ERR_INSUFFICIENT_FUNDS) return fail("the refused withdrawal", s);

    if ((s = evs_close(store)) != EVS_OK) return fail("evs_close", s);
    store = NULL;
    if ((s = evs_open(path, NULL, &store, &info)) != EVS_OK) return fail("reopen", s);
    if ((s = evs_account_get(store, "alice", &acct)) != EVS_OK) return fail("get after reopen", s);
    printf("reopened: %" PRIu64 " events recovered, alice's balance is %" PRId64 "\n",
           info.next_position, acct.balance);
    return evs_close(store) == EVS_OK ? 0 : 1;
}
