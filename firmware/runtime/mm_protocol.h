/* Device side of the mcu_mot wire protocol (docs/protocol.md): COBS frames with a CRC-32, one
 * reply per well-formed request, the last reply kept for retransmission. No heap, no printf.
 * The receiver has no state a byte stream can wedge: a run longer than the largest frame is
 * discarded up to the next 0x00, and every 0x00 starts a new frame. */
#ifndef MM_PROTOCOL_H
#define MM_PROTOCOL_H
#include <stdint.h>

#define MM_PROTO_VERSION     1u
#define MM_PROTO_MAX_PAYLOAD 512u
#define MM_PROTO_OVERHEAD    8u /* type, seq, u16 len, u32 crc */

enum {
    MM_REQ_INFO = 0x01,
    MM_REQ_SET_INPUT = 0x02,
    MM_REQ_INVOKE = 0x03,
    MM_REQ_GET_OUTPUT = 0x04,
    MM_REQ_GET_PROFILE = 0x05,
    MM_REQ_GET_TENSOR = 0x06,
    MM_REQ_PING = 0x07,
    MM_REQ_LAYER_INFO = 0x08,
    MM_REQ_STATS = 0x09,
    MM_REQ_STATUS = 0x0A,
    MM_REPLY_ERROR = 0x7F,
};

enum {
    MM_ERR_UNKNOWN = 1,
    MM_ERR_BAD_LENGTH = 2,
    MM_ERR_RANGE = 3,
    MM_ERR_NOT_FRESH = 4,
    MM_ERR_OTHER = 5,
    MM_ERR_CORRUPT = 6,
};

/* Never returns: poll mm_uart_getc() and answer requests. */
void mm_protocol_run(void);

/* The same machine one byte at a time (host tests, or firmware with its own main loop). */
void mm_protocol_init(void);
void mm_protocol_feed(uint8_t byte);

#endif
