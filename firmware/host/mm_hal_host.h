/* Host build of the firmware: set-up calls beyond mm_hal.h. */
#ifndef MM_HAL_HOST_H
#define MM_HAL_HOST_H

/* Listen on 127.0.0.1:port (0: any free port). Returns the port, or -1. With watch_stdin_eof the
 * process exits once its standard input is closed. */
int mm_host_listen(int port, int watch_stdin_eof);

#endif
