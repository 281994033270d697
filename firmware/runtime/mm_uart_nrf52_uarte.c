/* nRF52 UARTE (EasyDMA UART), 8N1, no flow control.
 * TX: EasyDMA reads RAM only, so bytes go through a small RAM buffer.
 * RX: two 1-byte DMA buffers in turn; the ENDRX->STARTRX shortcut restarts reception at
 * once and each RXSTARTED event arms the other buffer, so no byte is dropped between polls
 * as long as the host waits for replies (the protocol is request/reply). */
#include "mm_hal.h"
#include "mm_regs.h"

#define UARTE(off)          MM_REG(MM_UART_BASE + (off))
#define TASKS_STARTRX       UARTE(0x000u)
#define TASKS_STARTTX       UARTE(0x008u)
#define EVENTS_ENDRX        UARTE(0x110u)
#define EVENTS_ENDTX        UARTE(0x120u)
#define EVENTS_RXSTARTED    UARTE(0x14Cu)
#define SHORTS              UARTE(0x200u)
#define ENABLE              UARTE(0x500u)
#define PSEL_TXD            UARTE(0x50Cu)
#define PSEL_RXD            UARTE(0x514u)
#define BAUDRATE            UARTE(0x524u)
#define RXD_PTR             UARTE(0x534u)
#define RXD_MAXCNT          UARTE(0x538u)
#define TXD_PTR             UARTE(0x544u)
#define TXD_MAXCNT          UARTE(0x548u)
#define CONFIG              UARTE(0x56Cu)
#define SHORT_ENDRX_STARTRX (1u << 5)

#define P0_OUTSET     MM_REG(0x50000508u)
#define P0_PIN_CNF(n) MM_REG(0x50000700u + 4u * (n))

static volatile uint8_t s_rx[2];
static uint8_t s_rx_cur; /* buffer the next ENDRX completes */
static uint8_t s_tx[32];

static uint32_t baud_reg(uint32_t baud)
{
    switch (baud) {
        case 9600u:
            return 0x00275000u;
        case 57600u:
            return 0x00EB0000u;
        case 230400u:
            return 0x03B00000u;
        case 460800u:
            return 0x07400000u;
        case 921600u:
            return 0x0F000000u;
        case 1000000u:
            return 0x10000000u;
        default:
            return 0x01D60000u; /* 115200 */
    }
}

void mm_uart_init(void)
{
    P0_OUTSET = 1u << MM_UART_TX_PIN;
    P0_PIN_CNF(MM_UART_TX_PIN) = 3u; /* output, input buffer disconnected */
    P0_PIN_CNF(MM_UART_RX_PIN) = 0u; /* input */
    PSEL_TXD = MM_UART_TX_PIN;
    PSEL_RXD = MM_UART_RX_PIN;
    BAUDRATE = baud_reg(MM_UART_BAUD);
    CONFIG = 0;
    ENABLE = 8u;
    s_rx_cur = 0;
    RXD_PTR = (uint32_t)(uintptr_t)&s_rx[0];
    RXD_MAXCNT = 1u;
    SHORTS = SHORT_ENDRX_STARTRX;
    EVENTS_RXSTARTED = 0;
    EVENTS_ENDRX = 0;
    TASKS_STARTRX = 1u;
    mm_uart_ready = 1;
}

int mm_uart_getc(void)
{
    if (EVENTS_RXSTARTED) { /* the pointer is latched: arm the other buffer */
        EVENTS_RXSTARTED = 0;
        RXD_PTR = (uint32_t)(uintptr_t)&s_rx[s_rx_cur ^ 1u];
    }
    if (!EVENTS_ENDRX) return -1;
    EVENTS_ENDRX = 0;
    uint8_t b = s_rx[s_rx_cur];
    s_rx_cur ^= 1u;
    return b;
}

void mm_uart_write(const uint8_t *p, uint32_t n)
{
    while (n) {
        uint32_t k = n < sizeof s_tx ? n : (uint32_t)sizeof s_tx;
        for (uint32_t i = 0; i < k; i++) s_tx[i] = p[i];
        EVENTS_ENDTX = 0;
        TXD_PTR = (uint32_t)(uintptr_t)s_tx;
        TXD_MAXCNT = k;
        TASKS_STARTTX = 1u;
        while (!EVENTS_ENDTX) {}
        p += k;
        n -= k;
    }
}
