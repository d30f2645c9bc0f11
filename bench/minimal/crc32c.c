/* CRC-32C (Castagnoli: polynomial 0x1EDC6F41, reflected 0x82F63B78, init and final xor
 * 0xFFFFFFFF), as nori-wal records carry it. With SSE4.2 the CPU's crc32 instruction in a
 * plain loop, 8 bytes a step (no interleaving: records are ~150 bytes, too short for it to
 * pay); without, a table of 256 entries, a byte a step. */
#include "minimal.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static uint32_t table[256];

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc_table(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(const uint8_t *p, size_t n)
{
    uint64_t c = 0xFFFFFFFFu, w;
    const uint8_t *words_end = p + (n & ~(size_t)7);
    for (; p != words_end; p += 8) {
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    if (n & 4) {
        uint32_t w4;
        memcpy(&w4, p, 4);
        c32 = _mm_crc32_u32(c32, w4);
        p += 4;
    }
    if (n & 2) {
        uint16_t w2;
        memcpy(&w2, p, 2);
        c32 = _mm_crc32_u16(c32, w2);
        p += 2;
    }
    if (n & 1)
        c32 = _mm_crc32_u8(c32, *p);
    return c32 ^ 0xFFFFFFFFu;
}
#endif

uint32_t (*min_crc32c)(const uint8_t *p, size_t n) = crc_table;

const char *min_crc32c_init(int force_table)
{
    build_table();
    min_crc32c = crc_table;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!force_table && __builtin_cpu_supports("sse4.2"))
        min_crc32c = crc_hw;
#endif
    return min_crc32c == crc_table ? "table (256 entries)" : "sse4.2 crc32 instruction";
}
