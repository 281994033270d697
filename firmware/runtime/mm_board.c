/* Board bring-up common to all boards; the drivers are chosen by the build. */
#include "mm_hal.h"
#include "mm_regs.h"

#ifndef MM_CLOCK_HZ
#error "MM_CLOCK_HZ comes from the board file (see mcu_mot/fwbuild)"
#endif

volatile uint8_t mm_uart_ready;

void mm_board_init(void)
{
    mm_uart_init();
    mm_timer_init();
    mm_enable_irq();
}

uint32_t mm_clock_hz(void)
{
    return MM_CLOCK_HZ;
}
