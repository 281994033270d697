/* mm_hal.h: the board contract between mcu_mot's runtime (protocol, profiling hooks)
 * and each board's drivers. Implemented by mm_board.c, one mm_uart_<kind>.c and one
 * mm_timer_<kind>.c, selected and configured (-D macros) from the board file. */
#ifndef MM_HAL_H
#define MM_HAL_H
#include <stdint.h>

/* Clocks, UART, timer. The FPU/MVE are already enabled by the reset code. */
void mm_board_init(void);

/* Next received byte 0..255, or -1 if none (never blocks). */
int mm_uart_getc(void);
/* Blocking transmit of n bytes. */
void mm_uart_write(const uint8_t *p, uint32_t n);

/* Free-running UP-counting ticks, full 32 bits (wraps at 2^32). */
uint32_t mm_timer_now(void);
/* 0 = instructions (QEMU, -icount), 1 = cycles (hardware). */
uint8_t mm_timer_unit(void);
/* Units per tick x 1000: calibrated at boot on QEMU (e.g. 40000 on mps2-an386), 1000 on hardware. */
uint32_t mm_timer_unit_per_tick_x1000(void);
/* Core clock in Hz (as described by the board file). */
uint32_t mm_clock_hz(void);

enum { MM_TIMER_UNIT_INSTRUCTIONS = 0, MM_TIMER_UNIT_CYCLES = 1 };

/* ---- below: runtime internals shared by the board files ---- */

/* Set by the UART driver once it may transmit (the fault handler only prints then). */
extern volatile uint8_t mm_uart_ready;
void mm_uart_init(void);
void mm_timer_init(void);

/* Last fault, kept in .noinit RAM across the reset that follows it.
 * magic == MM_FAULT_MAGIC when valid; count = faults since power-on. */
#define MM_FAULT_MAGIC 0x4d4d4654u /* "MMFT" */
typedef struct {
    uint32_t magic;
    uint32_t count;
    uint32_t exception; /* IPSR exception number (3 = HardFault, 16+n = IRQ n) */
    uint32_t pc, lr, psr;
    uint32_t cfsr, hfsr, fault_addr;
} mm_fault_record;
extern volatile mm_fault_record mm_last_fault;

#endif
