/* mcu_mot firmware entry: bring the board up, then serve the host protocol forever. */
#include "mm_hal.h"

void mm_protocol_run(void);

int main(void)
{
    mm_board_init();
    mm_protocol_run();
    for (;;) {}
}
