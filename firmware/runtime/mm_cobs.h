/* Consistent Overhead Byte Stuffing: frames without 0x00 bytes, so 0x00 can delimit them. */
#ifndef MM_COBS_H
#define MM_COBS_H
#include <stdint.h>
#include <stddef.h>

/* Worst-case encoded size of n bytes (without the 0x00 delimiter). */
#define MM_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Encode n bytes of `in` into `out` (room for MM_COBS_MAX_ENCODED(n) bytes; must not overlap `in`).
 * Returns the encoded length; the output holds no 0x00 byte and no delimiter. */
size_t mm_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);

/* Decode n encoded bytes (delimiter removed) into `out`, which may be `in` itself (decoding in
 * place is safe: the output never runs ahead of the input). Returns the decoded length, or -1 if
 * the input is not valid COBS (a 0x00 byte, or a block running past the end) or the result would
 * exceed `cap` bytes. */
long mm_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

#endif
