/* mm_regs.h: the few Arm core registers the runtime touches (written from the
 * Armv7-M / Armv8-M architecture reference manuals; no vendor headers). */
#ifndef MM_REGS_H
#define MM_REGS_H
#include <stdint.h>

#define MM_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* System control block */
#define SCB_ICSR          MM_REG(0xE000ED04u)
#define SCB_VTOR          MM_REG(0xE000ED08u)
#define SCB_AIRCR         MM_REG(0xE000ED0Cu)
#define SCB_CCR           MM_REG(0xE000ED14u)
#define SCB_CFSR          MM_REG(0xE000ED28u)
#define SCB_HFSR          MM_REG(0xE000ED2Cu)
#define SCB_MMFAR         MM_REG(0xE000ED34u)
#define SCB_BFAR          MM_REG(0xE000ED38u)
#define SCB_CPACR         MM_REG(0xE000ED88u)
#define ICSR_PENDSTSET    (1u << 26)
#define AIRCR_SYSRESETREQ (0x05FA0000u | (1u << 2))

/* SysTick */
#define SYST_CSR MM_REG(0xE000E010u)
#define SYST_RVR MM_REG(0xE000E014u)
#define SYST_CVR MM_REG(0xE000E018u)

/* Debug / DWT cycle counter (Armv7-M and later, not v6-M) */
#define DEMCR      MM_REG(0xE000EDFCu)
#define DWT_CTRL   MM_REG(0xE0001000u)
#define DWT_CYCCNT MM_REG(0xE0001004u)
#define DWT_LAR    MM_REG(0xE0001FB0u)

static inline void mm_dsb(void)
{
    __asm volatile("dsb 0xF" ::: "memory");
}
static inline void mm_isb(void)
{
    __asm volatile("isb 0xF" ::: "memory");
}
static inline void mm_enable_irq(void)
{
    __asm volatile("cpsie i" ::: "memory");
}
static inline void mm_disable_irq(void)
{
    __asm volatile("cpsid i" ::: "memory");
}

#endif
