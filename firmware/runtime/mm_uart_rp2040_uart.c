/* RP2040 UART (Arm PL011), polled 8N1. Also brings clk_ref/clk_sys/clk_peri onto the
 * 12 MHz crystal (no PLL), so the baud rate is exact and the clock is known. */
#include "mm_hal.h"
#include "mm_regs.h"

#define RESETS_RESET     MM_REG(0x4000C000u)
#define RESETS_RESET_CLR MM_REG(0x4000C000u + 0x3000u)
#define RESETS_DONE      MM_REG(0x4000C008u)
#define RST_IO_BANK0     (1u << 5)
#define RST_PADS_BANK0   (1u << 8)
#define RST_UART0        (1u << 22)
#define RST_UART1        (1u << 23)

#define XOSC_CTRL    MM_REG(0x40024000u)
#define XOSC_STATUS  MM_REG(0x40024004u)
#define XOSC_STARTUP MM_REG(0x4002400Cu)

#define CLK_REF_CTRL     MM_REG(0x40008030u)
#define CLK_REF_SELECTED MM_REG(0x40008038u)
#define CLK_SYS_CTRL     MM_REG(0x4000803Cu)
#define CLK_SYS_SELECTED MM_REG(0x40008044u)
#define CLK_PERI_CTRL    MM_REG(0x40008048u)

#define IO_GPIO_CTRL(n) MM_REG(0x40014004u + 8u * (n))
#define FUNC_UART       2u

#define UART_DR    MM_REG(MM_UART_BASE + 0x000u)
#define UART_FR    MM_REG(MM_UART_BASE + 0x018u) /* bit4 RXFE, bit5 TXFF */
#define UART_IBRD  MM_REG(MM_UART_BASE + 0x024u)
#define UART_FBRD  MM_REG(MM_UART_BASE + 0x028u)
#define UART_LCR_H MM_REG(MM_UART_BASE + 0x02Cu)
#define UART_CR    MM_REG(MM_UART_BASE + 0x030u)

static void clocks_on_xosc(void)
{
    XOSC_CTRL = 0xAA0u; /* 1-15 MHz range */
    XOSC_STARTUP = ((12000000u / 1000u) + 128u) / 256u;
    XOSC_CTRL = 0xAA0u | (0xFABu << 12);  /* enable */
    while (!(XOSC_STATUS & (1u << 31))) { /* stable */
    }
    CLK_REF_CTRL = 2u; /* clk_ref <- xosc */
    while (!(CLK_REF_SELECTED & (1u << 2))) {}
    CLK_SYS_CTRL = 0u; /* clk_sys <- clk_ref (glitchless) */
    while (!(CLK_SYS_SELECTED & 1u)) {}
    CLK_PERI_CTRL = (1u << 11); /* enable, aux source clk_sys */
}

void mm_uart_init(void)
{
    uint32_t rst = RST_IO_BANK0 | RST_PADS_BANK0 | (MM_UART_BASE == 0x40034000u ? RST_UART0 : RST_UART1);
    clocks_on_xosc();
    RESETS_RESET_CLR = rst;
    while ((RESETS_DONE & rst) != rst) {}
    /* divisor = clk / (16 * baud) in 16.6 fixed point */
    uint32_t div64 = (8u * MM_UART_CLOCK_HZ / MM_UART_BAUD + 1u) / 2u;
    UART_IBRD = div64 >> 6;
    UART_FBRD = div64 & 0x3Fu;
    UART_LCR_H = (3u << 5) | (1u << 4);          /* 8 bits, FIFOs on (latches the divisor) */
    UART_CR = (1u << 0) | (1u << 8) | (1u << 9); /* UARTEN, TXE, RXE */
    IO_GPIO_CTRL(MM_UART_TX_PIN) = FUNC_UART;
    IO_GPIO_CTRL(MM_UART_RX_PIN) = FUNC_UART;
    mm_uart_ready = 1;
}

int mm_uart_getc(void)
{
    if (UART_FR & (1u << 4)) return -1;
    return (int)(UART_DR & 0xFFu);
}

void mm_uart_write(const uint8_t *p, uint32_t n)
{
    while (n--) {
        while (UART_FR & (1u << 5)) {}
        UART_DR = *p++;
    }
}
