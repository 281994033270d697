/* STM32 USART / LPUART, polled 8N1.
 *   MM_STM32F4: the F2/F4 register layout (SR, DR, BRR, CR1) - also QEMU's stm32f2xx-usart
 *   MM_STM32F7, MM_STM32L4: the newer layout (CR1, BRR, ISR, ICR, RDR, TDR); MM_UART_LPUART
 *   selects the LPUART baud formula (256 * f / baud).
 * Pins: MM_UART_{TX,RX}_{PORT,PIN} (port 0 = A) in alternate function MM_UART_AF; the
 * UART's clock gate is bit MM_UART_CLKEN_BIT of register MM_UART_CLKEN_REG (from the board file). */
#include "mm_hal.h"
#include "mm_regs.h"

#if defined(MM_STM32F4) || defined(MM_STM32F7)
#define GPIO_BASE(port) (0x40020000u + 0x400u * (port))
#define RCC_GPIOEN_REG  0x40023830u /* RCC_AHB1ENR */
#elif defined(MM_STM32L4)
#define GPIO_BASE(port) (0x48000000u + 0x400u * (port))
#define RCC_GPIOEN_REG  0x4002104Cu /* RCC_AHB2ENR */
#define RCC_APB1ENR1    0x40021058u
#define PWR_CR2         0x40007004u
#else
#error "stm32-usart needs MM_STM32F4, MM_STM32F7 or MM_STM32L4"
#endif

#define GPIO_MODER(b)   MM_REG((b) + 0x00u)
#define GPIO_OSPEEDR(b) MM_REG((b) + 0x08u)
#define GPIO_PUPDR(b)   MM_REG((b) + 0x0Cu)
#define GPIO_AFR(b, i)  MM_REG((b) + 0x20u + 4u * (i))

#if defined(MM_STM32F4)
#define USART_SR  MM_REG(MM_UART_BASE + 0x00u)
#define USART_DR  MM_REG(MM_UART_BASE + 0x04u)
#define USART_BRR MM_REG(MM_UART_BASE + 0x08u)
#define USART_CR1 MM_REG(MM_UART_BASE + 0x0Cu)
#define CR1_UE    (1u << 13)
#define STAT      USART_SR
#define RXDATA    USART_DR
#define TXDATA    USART_DR
#else
#define USART_CR1 MM_REG(MM_UART_BASE + 0x00u)
#define USART_BRR MM_REG(MM_UART_BASE + 0x0Cu)
#define USART_ISR MM_REG(MM_UART_BASE + 0x1Cu)
#define USART_ICR MM_REG(MM_UART_BASE + 0x20u)
#define USART_RDR MM_REG(MM_UART_BASE + 0x24u)
#define USART_TDR MM_REG(MM_UART_BASE + 0x28u)
#define CR1_UE    (1u << 0)
#define STAT      USART_ISR
#define RXDATA    USART_RDR
#define TXDATA    USART_TDR
#endif
#define CR1_RE  (1u << 2)
#define CR1_TE  (1u << 3)
#define ST_ORE  (1u << 3)
#define ST_RXNE (1u << 5)
#define ST_TXE  (1u << 7)

static void pin_af(uint32_t port, uint32_t pin, uint32_t af)
{
    uint32_t b = GPIO_BASE(port);
    MM_REG(RCC_GPIOEN_REG) |= 1u << port;
    (void)MM_REG(RCC_GPIOEN_REG); /* let the clock settle */
    GPIO_AFR(b, pin >> 3) =
        (GPIO_AFR(b, pin >> 3) & ~(0xFu << ((pin & 7u) * 4u))) | (af << ((pin & 7u) * 4u));
    GPIO_OSPEEDR(b) |= 2u << (pin * 2u);
    GPIO_PUPDR(b) = (GPIO_PUPDR(b) & ~(3u << (pin * 2u))) | (1u << (pin * 2u)); /* pull-up */
    GPIO_MODER(b) = (GPIO_MODER(b) & ~(3u << (pin * 2u))) | (2u << (pin * 2u)); /* alternate */
}

void mm_uart_init(void)
{
#if defined(MM_STM32L4)
    MM_REG(RCC_APB1ENR1) |= 1u << 28; /* PWREN */
    (void)MM_REG(RCC_APB1ENR1);
    if (MM_UART_TX_PORT == 6 || MM_UART_RX_PORT == 6)
        MM_REG(PWR_CR2) |= 1u << 9; /* IOSV: VDDIO2 powers port G */
#endif
    MM_REG(MM_UART_CLKEN_REG) |= 1u << MM_UART_CLKEN_BIT;
    (void)MM_REG(MM_UART_CLKEN_REG);
    pin_af(MM_UART_TX_PORT, MM_UART_TX_PIN, MM_UART_AF);
    pin_af(MM_UART_RX_PORT, MM_UART_RX_PIN, MM_UART_AF);
    USART_CR1 = 0;
#if defined(MM_UART_LPUART)
    USART_BRR = (uint32_t)(((uint64_t)MM_UART_CLOCK_HZ * 256u + MM_UART_BAUD / 2u) / MM_UART_BAUD);
#else
    USART_BRR = (MM_UART_CLOCK_HZ + MM_UART_BAUD / 2u) / MM_UART_BAUD; /* oversampling by 16 */
#endif
    USART_CR1 = CR1_TE | CR1_RE;
    USART_CR1 = CR1_TE | CR1_RE | CR1_UE;
    mm_uart_ready = 1;
}

int mm_uart_getc(void)
{
    uint32_t st = STAT;
    if (st & ST_RXNE) return (int)(RXDATA & 0xFFu);
    if (st & ST_ORE) { /* overrun: clear it, the protocol recovers */
#if defined(MM_STM32F4)
        (void)USART_DR;
#else
        USART_ICR = ST_ORE;
#endif
    }
    return -1;
}

void mm_uart_write(const uint8_t *p, uint32_t n)
{
    while (n--) {
        while (!(STAT & ST_TXE)) {}
        TXDATA = *p++;
    }
}
