/* Profiling timer on the DWT cycle counter (Armv7-M / Armv8-M hardware): unit = cycles. */
#include "mm_hal.h"
#include "mm_regs.h"

void mm_timer_init(void)
{
    DEMCR |= (1u << 24); /* TRCENA */
#if defined(MM_CPU_CORTEX_M7)
    DWT_LAR = 0xC5ACCE55u; /* the M7's DWT is locked after reset */
#endif
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u; /* CYCCNTENA */
}

uint32_t mm_timer_now(void)
{
    return DWT_CYCCNT;
}
uint8_t mm_timer_unit(void)
{
    return MM_TIMER_UNIT_CYCLES;
}
uint32_t mm_timer_unit_per_tick_x1000(void)
{
    return 1000u;
}
