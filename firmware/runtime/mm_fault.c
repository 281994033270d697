/* Fault and unexpected-interrupt handling: never hang silently.
 *
 * The handler records the exception, the stacked PC/LR/xPSR and the fault status
 * registers in .noinit RAM (mm_last_fault, kept across the reset), prints one line
 * between two 0x00 delimiters on the UART if it is up (a host reading frames drops it
 * as a corrupt frame; `mcu-mot monitor` shows it), then requests a system reset. After
 * MM_FAULT_MAX_RESETS faults since power-on it stops resetting and spins with the
 * record in place, so a fault loop cannot run forever. */
#include "mm_hal.h"
#include "mm_regs.h"

#ifndef MM_FAULT_MAX_RESETS
#define MM_FAULT_MAX_RESETS 3u
#endif

volatile mm_fault_record mm_last_fault __attribute__((section(".noinit")));

static char *put_hex(char *p, uint32_t v)
{
    *p++ = '0';
    *p++ = 'x';
    for (int s = 28; s >= 0; s -= 4) {
        uint32_t d = (v >> s) & 0xFu;
        *p++ = (char)(d < 10u ? '0' + d : 'a' + d - 10u);
    }
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s) *p++ = *s++;
    return p;
}

/* Called from mm_fault_entry with the exception stack frame (r0-r3, r12, lr, pc, xpsr). */
void mm_fault_report(const uint32_t *frame) __attribute__((used, noreturn));
void mm_fault_report(const uint32_t *frame)
{
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    mm_fault_record r;
    r.magic = MM_FAULT_MAGIC;
    r.count = (mm_last_fault.magic == MM_FAULT_MAGIC ? mm_last_fault.count : 0u) + 1u;
    r.exception = ipsr & 0x1FFu;
    r.lr = frame[5];
    r.pc = frame[6];
    r.psr = frame[7];
#if defined(__ARM_ARCH_6M__)
    r.cfsr = r.hfsr = r.fault_addr = 0; /* v6-M has no fault status registers */
#else
    r.cfsr = SCB_CFSR;
    r.hfsr = SCB_HFSR;
    r.fault_addr = (r.cfsr & (1u << 15)) ? SCB_BFAR : (r.cfsr & (1u << 7)) ? SCB_MMFAR : 0u;
#endif
    mm_last_fault.exception = r.exception;
    mm_last_fault.pc = r.pc;
    mm_last_fault.lr = r.lr;
    mm_last_fault.psr = r.psr;
    mm_last_fault.cfsr = r.cfsr;
    mm_last_fault.hfsr = r.hfsr;
    mm_last_fault.fault_addr = r.fault_addr;
    mm_last_fault.count = r.count;
    mm_last_fault.magic = r.magic;

    if (mm_uart_ready) {
        char line[128], *p = line;
        *p++ = '\0';
        p = put_str(p, "MMFAULT exc=");
        p = put_hex(p, r.exception);
        p = put_str(p, " pc=");
        p = put_hex(p, r.pc);
        p = put_str(p, " lr=");
        p = put_hex(p, r.lr);
        p = put_str(p, " cfsr=");
        p = put_hex(p, r.cfsr);
        p = put_str(p, " addr=");
        p = put_hex(p, r.fault_addr);
        p = put_str(p, r.count >= MM_FAULT_MAX_RESETS ? " halted\n" : " reset\n");
        *p++ = '\0';
        mm_uart_write((const uint8_t *)line, (uint32_t)(p - line));
    }
    if (r.count < MM_FAULT_MAX_RESETS) {
        mm_dsb();
        SCB_AIRCR = AIRCR_SYSRESETREQ;
        mm_dsb();
    }
    for (;;) {
        __asm volatile("nop");
    }
}

/* Entry for every fault vector and any unexpected interrupt: find the stack frame
 * (MSP or PSP per EXC_RETURN bit 2) and report. If the frame sits in the last 128 bytes of
 * the stack (an overflow, e.g. the Armv8-M stack limit tripped), the report runs on a fresh
 * stack from the top: it never returns, so nothing there is needed any more.
 * Thumb-1 only, so it builds for v6-M. */
void mm_fault_entry(void) __attribute__((naked));
void mm_fault_entry(void)
{
    __asm volatile("movs r0, #4        \n"
                   "mov  r1, lr        \n"
                   "tst  r0, r1        \n"
                   "beq  1f            \n"
                   "mrs  r0, psp       \n"
                   "b    2f            \n"
                   "1: mrs r0, msp     \n"
                   "2: ldr r1, =__stack_bottom + 128 \n"
                   "cmp  r0, r1        \n"
                   "bhs  3f            \n"
                   "ldr  r1, =__stack_top \n"
                   "msr  msp, r1       \n"
                   "3: ldr r2, =mm_fault_report \n"
                   "bx   r2            \n"
                   ".ltorg             \n");
}
