/* RP2040 second-stage boot (boot2), written for mcu_mot.
 *
 * The boot ROM copies the first 256 bytes of flash to SRAM (0x20041f00), checks their CRC-32
 * (the last 4 bytes) and runs them. This sets the XIP SSI up for plain serial reads (command
 * 03h, 24-bit address, 32-bit frames): slow but works with any SPI flash. Then, when entered
 * from the boot ROM (lr = 0), it points VTOR at the vector table right after boot2 and starts
 * the image from it; when called from code it returns. mcu_mot.fwbuild.boot2 assembles this,
 * pads it to 252 bytes and appends the CRC. */
    .syntax unified
    .cpu cortex-m0plus
    .thumb

    .section .text
    .global boot2_entry
    .thumb_func
boot2_entry:
    push {lr}
    ldr r3, =0x18000000        /* XIP SSI */
    movs r1, #0
    str r1, [r3, #0x08]        /* SSIENR = 0: configure */
    movs r1, #4
    str r1, [r3, #0x14]        /* BAUDR: clk_sys / 4 */
    ldr r1, =0x001f0300        /* CTRLR0: standard SPI, 32-bit frames, EEPROM-read mode */
    str r1, [r3, #0x00]
    ldr r1, =0x03000218        /* SPI_CTRLR0: instruction 03h (8 bits), 24-bit address, no wait */
    ldr r0, =0x180000f4
    str r1, [r0]
    movs r1, #0
    str r1, [r3, #0x04]        /* CTRLR1: one frame per transfer */
    movs r1, #1
    str r1, [r3, #0x08]        /* SSIENR = 1 */
    pop {r0}
    cmp r0, #0
    beq 1f
    bx r0                      /* called from code: return */
1:  ldr r0, =0x10000100        /* the image's vector table */
    ldr r1, =0xe000ed08        /* VTOR */
    str r0, [r1]
    ldmia r0, {r0, r1}         /* initial SP, reset handler */
    msr msp, r0
    bx r1
    .ltorg
