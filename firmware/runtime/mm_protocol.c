/* Device side of the mcu_mot wire protocol, version 1 (docs/protocol.md).
 *
 * Receive: bytes go into one bounded buffer until a 0x00 delimiter; an overlong run is dropped up
 * to the next 0x00. The frame is COBS-decoded in place and checked (size, len field, CRC-32); a
 * corrupt frame is never executed. Reply: built in `tx` (kept there as the cached reply for a
 * retransmission), COBS-encoded into the now idle receive buffer and written with one 0x00 before
 * and one after it. Memory: two buffers of about 530 bytes and one u32 per layer. */
#include <string.h>

#include "mm_cobs.h"
#include "mm_crc32.h"
#include "mm_hal.h"
#include "mm_protocol.h"
#include "model.h"

#define MM_FRAME_MAX   (MM_PROTO_OVERHEAD + MM_PROTO_MAX_PAYLOAD)
#define MM_RX_CAP      (MM_COBS_MAX_ENCODED(MM_FRAME_MAX) + 2u)
#define MM_LAYERS      ((uint32_t)MODEL_NUM_LAYERS)
#define MM_PROFILE_MAX ((MM_PROTO_MAX_PAYLOAD - 2u) / 4u)

/* Per-layer ticks of the last INVOKE (filled by the MM_LAYER_END hook in model.c). */
uint32_t mm_prof_ticks[MODEL_NUM_LAYERS > 0 ? MODEL_NUM_LAYERS : 1];
uint32_t mm_prof_mark;

static uint8_t rx[MM_RX_CAP];
static uint32_t rx_len;
static uint8_t rx_overflow;

static uint8_t tx[MM_FRAME_MAX]; /* the last reply, raw (cached for retransmission) */
static uint32_t tx_len;
static uint8_t have_cache;
static uint8_t cache_type, cache_seq;
static uint32_t cache_crc; /* CRC of the request the cached reply answers */

static uint32_t in_received[MODEL_NUM_INPUTS > 0 ? MODEL_NUM_INPUTS : 1];
static uint32_t next_layer; /* first layer of a permitted continuation, 0 = none */

/* What STATUS reports about the last INVOKE executed (not retransmitted). */
static uint8_t last_invoke_seq, have_invoked;
static uint32_t last_ticks, last_ran;
static uint8_t outputs_valid; /* a whole-model run ended, no SET_INPUT since */

enum {
    ST_FRAMES,
    ST_RETRANSMITS,
    ST_CORRUPT,
    ST_DROPPED,
    ST_INVOKES,
    ST_ERRORS,
    ST_RX_BYTES,
    ST_OVERLONG,
    ST_COUNT
};
static uint32_t stats[ST_COUNT];

static uint32_t get16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint8_t *put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}
static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

/* COBS-encode `frame` into rx (idle by now) and send it between two delimiters. */
static void send_raw(const uint8_t *frame, uint32_t n)
{
    rx[0] = 0;
    size_t m = mm_cobs_encode(frame, n, rx + 1);
    rx[1 + m] = 0;
    mm_uart_write(rx, (uint32_t)(m + 2));
}

/* Finish the reply whose payload (n bytes) is at tx + 4. */
static void seal(uint8_t type, uint8_t seq, uint32_t n)
{
    tx[0] = type;
    tx[1] = seq;
    put16(tx + 2, n);
    put32(tx + 4 + n, mm_crc32(tx, 4 + n));
    tx_len = 8 + n;
}

static uint32_t error_payload(uint8_t code, uint8_t req_type, const char *msg)
{
    uint8_t *p = tx + 4;
    uint32_t n = 0;
    p[n++] = code;
    p[n++] = req_type;
    while (*msg && n < 64) p[n++] = (uint8_t)*msg++;
    stats[ST_ERRORS]++;
    return n;
}

#define FAIL(code, msg)                                                                                      \
    do {                                                                                                     \
        *reply_type = MM_REPLY_ERROR;                                                                        \
        return error_payload((code), type, (msg));                                                           \
    } while (0)

static uint32_t io_desc(uint8_t *p, uint32_t room, const model_io_info *io)
{
    uint32_t need = 2u + 4u * io->rank + 12u;
    if (need > room || io->rank > 6) return 0;
    uint8_t *q = p;
    *q++ = io->dtype;
    *q++ = io->rank;
    for (uint32_t d = 0; d < io->rank; d++) q = put32(q, (uint32_t)io->dims[d]);
    q = put32(q, io->bytes);
    uint32_t scale_bits;
    memcpy(&scale_bits, &io->scale, 4);
    q = put32(q, scale_bits);
    q = put32(q, (uint32_t)io->zero_point);
    return (uint32_t)(q - p);
}

static uint32_t do_info(uint8_t type, uint8_t *reply_type)
{
    uint8_t *p = tx + 4, *q = p, *end = p + MM_PROTO_MAX_PAYLOAD;
    *q++ = MM_PROTO_VERSION;
    *q++ = mm_timer_unit();
    q = put16(q, MM_LAYERS);
    q = put32(q, MODEL_HASH);
    q = put32(q, MODEL_ARENA_BYTES);
    q = put32(q, mm_clock_hz());
    q = put32(q, mm_timer_unit_per_tick_x1000());
    q = put16(q, MM_PROTO_MAX_PAYLOAD);
    *q++ = (uint8_t)MODEL_NUM_INPUTS;
    *q++ = (uint8_t)MODEL_NUM_OUTPUTS;
    for (int i = 0; i < MODEL_NUM_INPUTS + MODEL_NUM_OUTPUTS; i++) {
        const model_io_info *io =
            i < MODEL_NUM_INPUTS ? &model_input_info[i] : &model_output_info[i - MODEL_NUM_INPUTS];
        uint32_t n = io_desc(q, (uint32_t)(end - q), io);
        if (n == 0) FAIL(MM_ERR_OTHER, "info too large");
        q += n;
    }
    const char *name = MODEL_NAME;
    uint32_t len = (uint32_t)strlen(name), room = (uint32_t)(end - q) - 1u;
    if (len > room) len = room;
    if (len > 255) len = 255;
    *q++ = (uint8_t)len;
    memcpy(q, name, len);
    q += len;
    return (uint32_t)(q - p);
}

static int inputs_fresh(void)
{
    for (int i = 0; i < MODEL_NUM_INPUTS; i++)
        if (in_received[i] != model_input_info[i].bytes) return 0;
    return 1;
}

static uint32_t do_set_input(uint8_t type, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    if (n < 6 || p[1] != 0) FAIL(MM_ERR_BAD_LENGTH, "SET_INPUT: u8 index, u8 0, u32 offset, data");
    uint32_t index = p[0], offset = get32(p + 2), count = n - 6;
    if (index >= (uint32_t)MODEL_NUM_INPUTS) FAIL(MM_ERR_RANGE, "no such input");
    uint32_t size = model_input_info[index].bytes;
    if (offset > size || count > size - offset) FAIL(MM_ERR_RANGE, "past the end of the input");
    if (offset > in_received[index]) FAIL(MM_ERR_RANGE, "gap: write the input in order");
    memcpy((uint8_t *)model_input((int)index) + offset, p + 6, count);
    if (offset == 0 || offset + count > in_received[index])
        in_received[index] = offset + count; /* offset 0 starts the input anew */
    next_layer = 0;                          /* the arena changed: no continuation of a partial run */
    outputs_valid = 0;                       /* ... and the plan may share the input's bytes with outputs */
    put32(tx + 4, in_received[index]);
    return 4;
}

static uint32_t do_invoke(uint8_t type, uint8_t seq, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    if (n != 4) FAIL(MM_ERR_BAD_LENGTH, "INVOKE: u16 first, u16 last");
    uint32_t first = get16(p), last = get16(p + 2);
    if (last == 0xFFFFu) last = MM_LAYERS - 1u; /* wraps for a model without layers: checked below */
    if (MM_LAYERS == 0) {
        if (first != 0 || get16(p + 2) != 0xFFFFu) FAIL(MM_ERR_RANGE, "layer out of range");
    } else if (first > last || last >= MM_LAYERS) {
        FAIL(MM_ERR_RANGE, "layer out of range");
    }
    if (first == 0) {
        if (!inputs_fresh()) FAIL(MM_ERR_NOT_FRESH, "no fresh input since the last INVOKE");
        memset(mm_prof_ticks, 0, sizeof mm_prof_ticks);
    } else if (first != next_layer) {
        FAIL(MM_ERR_NOT_FRESH, "INVOKE from a later layer must continue the previous one");
    }
    for (int i = 0; i < MODEL_NUM_INPUTS; i++)
        in_received[i] = 0; /* consumed: the plan may reuse the input's bytes */
    uint32_t ran = 0, t0 = mm_timer_now(), t1 = t0;
    if (MM_LAYERS > 0) {
        mm_prof_mark = t0;
        model_invoke_range((int)first, (int)last);
        t1 = mm_timer_now();
        ran = last - first + 1u;
        next_layer = last + 1u < MM_LAYERS ? last + 1u : 0u;
    }
    outputs_valid = (uint8_t)(last + 1u >= MM_LAYERS);
    stats[ST_INVOKES]++;
    have_invoked = 1;
    last_invoke_seq = seq;
    last_ticks = t1 - t0;
    last_ran = ran;
    uint8_t *q = put32(tx + 4, t1 - t0);
    put16(q, ran);
    return 6;
}

static uint32_t do_get_output(uint8_t type, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    if (n != 8 || p[1] != 0) FAIL(MM_ERR_BAD_LENGTH, "GET_OUTPUT: u8 index, u8 0, u32 offset, u16 length");
    uint32_t index = p[0], offset = get32(p + 2), len = get16(p + 6);
    if (index >= (uint32_t)MODEL_NUM_OUTPUTS) FAIL(MM_ERR_RANGE, "no such output");
    uint32_t size = model_output_info[index].bytes;
    if (len > MM_PROTO_MAX_PAYLOAD || offset > size || len > size - offset)
        FAIL(MM_ERR_RANGE, "past the end of the output");
    if (!outputs_valid) FAIL(MM_ERR_NOT_FRESH, "no output: no whole INVOKE since boot or since SET_INPUT");
    memcpy(tx + 4, (const uint8_t *)model_output((int)index) + offset, len);
    return len;
}

static uint32_t do_get_profile(uint8_t type, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    if (n != 4) FAIL(MM_ERR_BAD_LENGTH, "GET_PROFILE: u16 first, u16 count");
    uint32_t first = get16(p), count = get16(p + 2);
    if (count > MM_PROFILE_MAX || first > MM_LAYERS || count > MM_LAYERS - first)
        FAIL(MM_ERR_RANGE, "layer out of range");
    uint8_t *q = put16(tx + 4, count);
    for (uint32_t i = 0; i < count; i++) q = put32(q, mm_prof_ticks[first + i]);
    return 2u + 4u * count;
}

static uint32_t do_get_tensor(uint8_t type, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    if (n != 8) FAIL(MM_ERR_BAD_LENGTH, "GET_TENSOR: u16 layer, u32 offset, u16 length");
    uint32_t layer = get16(p), offset = get32(p + 2), len = get16(p + 6);
    if (layer >= MM_LAYERS) FAIL(MM_ERR_RANGE, "layer out of range");
    const model_layer_info *li = &model_layer_info_table[layer];
    if (len > MM_PROTO_MAX_PAYLOAD || offset > li->out_bytes || len > li->out_bytes - offset)
        FAIL(MM_ERR_RANGE, "past the end of the tensor");
    memcpy(tx + 4, model_arena() + li->out_offset + offset, len);
    return len;
}

static uint32_t put_str(uint8_t *q, const char *s, uint32_t max)
{
    uint32_t len = (uint32_t)strlen(s);
    if (len > max) len = max;
    q[0] = (uint8_t)len;
    memcpy(q + 1, s, len);
    return len + 1u;
}

static uint32_t do_layer_info(uint8_t type, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    if (n != 2) FAIL(MM_ERR_BAD_LENGTH, "LAYER_INFO: u16 layer");
    uint32_t layer = get16(p);
    if (layer >= MM_LAYERS) FAIL(MM_ERR_RANGE, "layer out of range");
    const model_layer_info *li = &model_layer_info_table[layer];
    uint8_t *q = put16(tx + 4, layer);
    q = put32(q, li->macs);
    q = put32(q, li->out_offset);
    q = put32(q, li->out_bytes);
    q += put_str(q, li->op, 48);
    q += put_str(q, li->name, 255);
    return (uint32_t)(q - (tx + 4));
}

static uint32_t do_stats(uint8_t type, uint32_t n, uint8_t *reply_type)
{
    if (n != 0) FAIL(MM_ERR_BAD_LENGTH, "STATS takes no payload");
    uint8_t *q = tx + 4;
    *q++ = ST_COUNT;
    for (int i = 0; i < ST_COUNT; i++) q = put32(q, stats[i]);
    return 1u + 4u * ST_COUNT;
}

/* STATUS: u32 INVOKEs executed, u8 flags (bit0 an INVOKE ran since boot, bit1 inputs fresh,
 * bit2 outputs valid), u8 seq of the last INVOKE executed, u32 its ticks, u16 its layers run,
 * u8 input count, then per input u32 contiguous bytes received since the last INVOKE. */
static uint32_t do_status(uint8_t type, uint32_t n, uint8_t *reply_type)
{
    if (n != 0) FAIL(MM_ERR_BAD_LENGTH, "STATUS takes no payload");
    uint8_t *q = put32(tx + 4, stats[ST_INVOKES]);
    *q++ = (uint8_t)(have_invoked | (inputs_fresh() << 1) | (outputs_valid << 2));
    *q++ = last_invoke_seq;
    q = put32(q, last_ticks);
    q = put16(q, last_ran);
    *q++ = (uint8_t)MODEL_NUM_INPUTS;
    for (int i = 0; i < MODEL_NUM_INPUTS; i++) q = put32(q, in_received[i]);
    return (uint32_t)(q - (tx + 4));
}

static uint32_t dispatch(uint8_t type, uint8_t seq, const uint8_t *p, uint32_t n, uint8_t *reply_type)
{
    *reply_type = (uint8_t)(type | 0x80u);
    switch (type) {
        case MM_REQ_INFO:
            if (n != 0) FAIL(MM_ERR_BAD_LENGTH, "INFO takes no payload");
            return do_info(type, reply_type);
        case MM_REQ_SET_INPUT:
            return do_set_input(type, p, n, reply_type);
        case MM_REQ_INVOKE:
            return do_invoke(type, seq, p, n, reply_type);
        case MM_REQ_GET_OUTPUT:
            return do_get_output(type, p, n, reply_type);
        case MM_REQ_GET_PROFILE:
            return do_get_profile(type, p, n, reply_type);
        case MM_REQ_GET_TENSOR:
            return do_get_tensor(type, p, n, reply_type);
        case MM_REQ_PING:
            memcpy(tx + 4, p, n);
            return n;
        case MM_REQ_LAYER_INFO:
            return do_layer_info(type, p, n, reply_type);
        case MM_REQ_STATS:
            return do_stats(type, n, reply_type);
        case MM_REQ_STATUS:
            return do_status(type, n, reply_type);
        default:
            FAIL(MM_ERR_UNKNOWN, "unknown request");
    }
}

/* Never executed. A NAK (not cached) tells the host to resend at once. */
static void send_nak(uint8_t type, uint8_t seq)
{
    uint8_t nak[8 + 2 + 7];
    stats[ST_CORRUPT]++;
    nak[0] = MM_REPLY_ERROR;
    nak[1] = seq;
    put16(nak + 2, 9);
    nak[4] = MM_ERR_CORRUPT;
    nak[5] = type;
    memcpy(nak + 6, "corrupt", 7);
    put32(nak + 13, mm_crc32(nak, 13));
    send_raw(nak, sizeof nak);
}

/* One complete encoded frame is in rx[0..rx_len). */
static void handle_frame(void)
{
    /* type and seq as they stand in the encoding (the first COBS block holds them unless one is
     * 0): a frame too damaged to decode is still NAKed with them, so the host resends at once
     * instead of waiting for its timeout (a wrong seq is ignored by the host). */
    uint8_t code = rx[0], etype = 0, eseq = 0;
    int known = 0;
    if (rx_len > 2 && code >= 3u) {
        etype = rx[1];
        eseq = rx[2];
        known = 1;
    } else if (rx_len > 1 && code == 2u) {
        etype = rx[1]; /* seq 0 */
        known = 1;
    }
    long n = mm_cobs_decode(rx, rx_len, rx, sizeof rx);
    if (n < (long)MM_PROTO_OVERHEAD) {
        if (n < 0 && known && rx_len >= MM_PROTO_OVERHEAD) {
            send_nak(etype, eseq); /* a damaged frame: worth a resend */
            return;
        }
        stats[ST_DROPPED]++; /* short, or no frame at all: nothing to answer to */
        return;
    }
    uint8_t type = rx[0], seq = rx[1];
    uint32_t len = get16(rx + 2);
    uint32_t crc = get32(rx + n - 4);
    if (len != (uint32_t)n - MM_PROTO_OVERHEAD || len > MM_PROTO_MAX_PAYLOAD ||
        crc != mm_crc32(rx, (size_t)n - 4u)) {
        send_nak(type, seq);
        return;
    }
    stats[ST_FRAMES]++;
    if (have_cache && type == cache_type && seq == cache_seq && crc == cache_crc) {
        stats[ST_RETRANSMITS]++; /* the host did not get our reply: same reply, not re-run */
        send_raw(tx, tx_len);
        return;
    }
    uint8_t reply_type;
    uint32_t m = dispatch(type, seq, rx + 4, len, &reply_type);
    seal(reply_type, seq, m);
    have_cache = 1;
    cache_type = type;
    cache_seq = seq;
    cache_crc = crc;
    send_raw(tx, tx_len);
}

void mm_protocol_init(void)
{
    rx_len = 0;
    rx_overflow = 0;
    have_cache = 0;
    next_layer = 0;
    have_invoked = 0;
    last_invoke_seq = 0;
    last_ticks = last_ran = 0;
    outputs_valid = 0;
    memset(in_received, 0, sizeof in_received);
    memset(stats, 0, sizeof stats);
    memset(mm_prof_ticks, 0, sizeof mm_prof_ticks);
}

/* The receiver's whole state is rx_len and rx_overflow, and every 0x00 resets both: whatever came
 * before, the next delimited frame is read afresh. A run longer than the largest encoded frame is
 * discarded (counted once, at its 0x00) without growing anything. */
void mm_protocol_feed(uint8_t b)
{
    stats[ST_RX_BYTES]++;
    if (b == 0) {
        if (rx_overflow) {
            stats[ST_DROPPED]++;
            stats[ST_OVERLONG]++;
        } else if (rx_len > 0) {
            handle_frame();
        }
        rx_len = 0;
        rx_overflow = 0;
        return;
    }
    if (rx_overflow) return;
    if (rx_len >= MM_RX_CAP - 2u) { /* longer than any valid frame: drop up to the next 0x00 */
        rx_overflow = 1;
        rx_len = 0;
        return;
    }
    rx[rx_len++] = b;
}

void mm_protocol_run(void)
{
    mm_protocol_init();
    for (;;) {
        int c = mm_uart_getc();
        if (c >= 0) mm_protocol_feed((uint8_t)c);
    }
}
