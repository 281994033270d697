/* Profiling timer on SysTick (QEMU boards, and cores without a DWT cycle counter).
 *
 * SysTick is a 24-bit down-counter on the processor clock. It runs with the full reload
 * and its wrap interrupt extends it to a 32-bit up-counter. Under QEMU -icount shift=0
 * there are no cycles: each instruction advances virtual time by 1 ns, and the tick is a
 * fixed number of instructions (40 on mps2-an386, 31.25 on mps3-an547). That figure is
 * measured at boot by timing two spin loops of known length (subs/bne: 2 instructions per
 * iteration) and taking the difference, which cancels the call and read overhead. */
#include "mm_hal.h"
#include "mm_regs.h"

#ifndef MM_TIMER_UNIT
#define MM_TIMER_UNIT MM_TIMER_UNIT_CYCLES
#endif
#ifndef MM_TIMER_CALIBRATE
#define MM_TIMER_CALIBRATE 0
#endif

#define SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t s_wraps;
static uint32_t s_unit_x1000 = 1000u;

void SysTick_Handler(void)
{
    s_wraps++;
}

uint32_t mm_timer_now(void)
{
    uint32_t hi, v;
    do {
        hi = s_wraps;
        v = SYST_CVR;
    } while (hi != s_wraps);
    /* With interrupts masked a wrap may be pending but not yet counted. */
    if ((SCB_ICSR & ICSR_PENDSTSET) && v > (SYST_RELOAD >> 1)) hi++;
    return (hi << 24) + (SYST_RELOAD - v);
}

uint8_t mm_timer_unit(void)
{
    return MM_TIMER_UNIT;
}
uint32_t mm_timer_unit_per_tick_x1000(void)
{
    return s_unit_x1000;
}

#if MM_TIMER_CALIBRATE
/* n iterations of exactly two instructions. */
static void __attribute__((noinline)) spin(uint32_t n)
{
    __asm volatile("1: subs %0, %0, #1 \n"
                   "   bne 1b          \n"
                   : "+l"(n)::"cc");
}

static uint32_t __attribute__((noinline)) time_spin(uint32_t n)
{
    uint32_t t0 = mm_timer_now();
    spin(n);
    return mm_timer_now() - t0;
}

static uint32_t calibrate(void)
{
    const uint32_t n1 = 100000u, n2 = 2100000u; /* 4 M instructions apart */
    (void)time_spin(1000u);                     /* warm up (QEMU translates the loop) */
    uint32_t d1 = time_spin(n1);
    uint32_t d2 = time_spin(n2);
    uint32_t ticks = d2 - d1;
    if (ticks == 0u || d2 <= d1) return 1000u;
    uint64_t instr_x1000 = (uint64_t)(2u * (n2 - n1)) * 1000u;
    return (uint32_t)((instr_x1000 + ticks / 2u) / ticks);
}
#endif

void mm_timer_init(void)
{
    SYST_CSR = 0;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0; /* any write clears the counter */
    s_wraps = 0;
    SYST_CSR = 7u; /* enable | tick interrupt | processor clock */
    mm_enable_irq();
#if MM_TIMER_CALIBRATE
    s_unit_x1000 = calibrate();
#endif
}
