/* CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the same value as zlib's crc32(). */
#ifndef MM_CRC32_H
#define MM_CRC32_H
#include <stdint.h>
#include <stddef.h>

/* Continue a CRC: start with crc = 0 (as zlib.crc32(data) does), feed pieces in order. */
uint32_t mm_crc32_update(uint32_t crc, const uint8_t *data, size_t n);

static inline uint32_t mm_crc32(const uint8_t *data, size_t n)
{
    return mm_crc32_update(0u, data, n);
}

#endif
