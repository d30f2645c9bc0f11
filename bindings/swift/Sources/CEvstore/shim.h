/* The header of module CEvstore: evstore.h as installed (its directory comes from
 * pkg-config's Cflags, `pkg-config --cflags evstore`). */
#include <evstore.h>
