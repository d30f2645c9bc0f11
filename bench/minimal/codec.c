/* The decoding helpers both programs share, out of line. UTF-8: the full check, for names the ASCII
 * fast path (minimal.h) did not clear: no overlong forms, no surrogates, nothing past
 * U+10FFFF, no cut-short sequences. */
#include "minimal.h"

static int cont(uint8_t b) { return (b & 0xC0) == 0x80; }

int min_utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c < 0xC2 || c > 0xF4)
            return 0; /* a continuation byte, an overlong 2-byte lead, or past U+10FFFF */
        if (c < 0xE0) {
            if (i + 1 >= n || !cont(s[i + 1]))
                return 0;
            i += 2;
        } else if (c < 0xF0) {
            if (i + 2 >= n || !cont(s[i + 1]) || !cont(s[i + 2]))
                return 0;
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F))
                return 0; /* overlong, or a surrogate */
            i += 3;
        } else {
            if (i + 3 >= n || !cont(s[i + 1]) || !cont(s[i + 2]) || !cont(s[i + 3]))
                return 0;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
                return 0; /* overlong, or past U+10FFFF */
            i += 4;
        }
    }
    return 1;
}

/* Varints that minimal.h's inline paths do not take: fewer than 8 bytes left, or 9 and
 * 10 bytes long. Ten bytes at most; the tenth may hold only bit 63. */
int min_varint_bytewise(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *q = *p;
    uint64_t x = 0;
    for (int i = 0; i < 10; i++, q++) {
        if (q >= end)
            return 0;
        uint64_t bits = *q & 0x7f;
        if (i == 9 && bits > 1)
            return 0;
        x |= bits << (7 * i);
        if (!(*q & 0x80)) {
            *v = x;
            *p = q + 1;
            return 1;
        }
    }
    return 0;
}
