/* Arm CMSDK APB UART (MPS2 / MPS3 FPGA images): polled, 8N1. */
#include "mm_hal.h"
#include "mm_regs.h"

#define UART_DATA    MM_REG(MM_UART_BASE + 0x00u)
#define UART_STATE   MM_REG(MM_UART_BASE + 0x04u) /* bit0 TX full, bit1 RX full */
#define UART_CTRL    MM_REG(MM_UART_BASE + 0x08u) /* bit0 TX enable, bit1 RX enable */
#define UART_INTSTAT MM_REG(MM_UART_BASE + 0x0Cu) /* write 1 to clear; bits 2,3 overrun */
#define UART_BAUDDIV MM_REG(MM_UART_BASE + 0x10u)

void mm_uart_init(void)
{
    uint32_t div = MM_UART_CLOCK_HZ / MM_UART_BAUD;
    UART_CTRL = 0;
    UART_BAUDDIV = div < 16u ? 16u : div;
    UART_STATE = 0xCu; /* clear overrun flags */
    UART_CTRL = 3u;
    mm_uart_ready = 1;
}

int mm_uart_getc(void)
{
    if (UART_STATE & 2u) return (int)(UART_DATA & 0xFFu);
    if (UART_STATE & 0x8u) /* RX overrun: clear and carry on, the protocol recovers */
        UART_STATE = 0x8u;
    return -1;
}

/* A hardware UART always drains at its baud rate, but QEMU's keeps "TX full" set for as long as
 * the host does not read its socket. A host that floods us without reading must not wedge the
 * firmware (it would stop reading too, and both sides would wait for ever): after a bounded wait
 * the rest of the reply is dropped, as a real line drops bytes nobody listens to. The host
 * retransmits and gets the cached reply. */
#define MM_UART_TX_SPIN         2000000u
#define MM_UART_TX_SPIN_STALLED 2000u /* while the host still does not read: drop at once */

static uint8_t tx_stalled;

void mm_uart_write(const uint8_t *p, uint32_t n)
{
    while (n--) {
        uint32_t spin = 0, limit = tx_stalled ? MM_UART_TX_SPIN_STALLED : MM_UART_TX_SPIN;
        while (UART_STATE & 1u) {
            if (++spin >= limit) {
                tx_stalled = 1;
                return;
            }
        }
        tx_stalled = 0;
        UART_DATA = *p++;
    }
}
