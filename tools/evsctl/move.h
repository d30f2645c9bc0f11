/* evsctl's export, import and copy (move.c). */
#ifndef EVSCTL_MOVE_H
#define EVSCTL_MOVE_H

#include <stdbool.h>
#include <stdio.h>

/* Runs argv if it is export, import or copy (setting *rc, the exit code); false if not. */
bool evsctl_move(int argc, char **argv, int *rc);
/* Their lines of evsctl --help. */
void evsctl_move_usage(FILE *out);
/* evsctl help NAME for them; false if NAME is not one. */
bool evsctl_move_help(const char *name);

#endif
