/* Test-only stand-in for mm_protocol_run (firmware/runtime/mm_protocol.c belongs to the protocol):
 * echoes every byte back, answers '?' with one text line about the board, and 'R' by running the
 * model once and sending "ran <ticks>\n"; 'F' executes an undefined instruction (the fault handler
 * must report it and reset), 'S' overflows the stack. Also defines the profiling hooks' storage. */
#include <stdint.h>
#include "mm_hal.h"
#include "model.h"

uint32_t mm_prof_ticks[MODEL_NUM_LAYERS > 0 ? MODEL_NUM_LAYERS : 1];
uint32_t mm_prof_mark;

static void put_str(const char *s)
{
    uint32_t n = 0;
    while (s[n])
        n++;
    mm_uart_write((const uint8_t *)s, n);
}

static void put_u32(uint32_t v)
{
    char buf[11], *p = buf + sizeof buf;
    *--p = '\0';
    do {
        *--p = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    put_str(p);
}

static uint32_t __attribute__((noinline)) recurse(volatile uint32_t *p)
{
    volatile uint32_t pad[32];
    pad[0] = *p + 1u;
    return recurse(pad) + pad[1];   /* not a tail call: grows until the stack runs out */
}

void mm_protocol_run(void)
{
    put_str("\nmm-stub ready\n");
    for (;;) {
        int c = mm_uart_getc();
        if (c < 0)
            continue;
        if (c == '?') {
            put_str("unit=");
            put_u32(mm_timer_unit());
            put_str(" x1000=");
            put_u32(mm_timer_unit_per_tick_x1000());
            put_str(" clock=");
            put_u32(mm_clock_hz());
            put_str(" layers=");
            put_u32(MODEL_NUM_LAYERS);
            put_str("\n");
        } else if (c == 'R') {
            for (uint32_t i = 0; i < MODEL_NUM_INPUTS; i++) {
                uint8_t *in = (uint8_t *)model_input((int)i);
                for (uint32_t k = 0; k < model_input_info[i].bytes; k++)
                    in[k] = (uint8_t)(k * 7u);
            }
            mm_prof_mark = mm_timer_now();
            uint32_t t0 = mm_prof_mark;
            model_invoke();
            put_str("ran ");
            put_u32(mm_timer_now() - t0);
            put_str("\n");
        } else if (c == 'S') {
            volatile uint32_t seed = 1;
            put_u32(recurse(&seed));
        } else if (c == 'F') {
            __asm volatile("udf #0");
        } else {
            uint8_t b = (uint8_t)c;
            mm_uart_write(&b, 1);
        }
    }
}
