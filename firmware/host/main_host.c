/* Host build entry: `mm_host_fw [PORT] [--no-stdin-watch]` serves the protocol on 127.0.0.1:PORT
 * (default: a free port) and prints "PORT <n>" on stdout once it listens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_hal.h"
#include "mm_hal_host.h"
#include "mm_protocol.h"

int main(int argc, char **argv)
{
    int port = 0, watch = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-stdin-watch") == 0)
            watch = 0;
        else
            port = atoi(argv[i]);
    }
    port = mm_host_listen(port, watch);
    if (port < 0) {
        fputs("mm_host_fw: cannot listen on 127.0.0.1\n", stderr);
        return 1;
    }
    printf("PORT %d\n", port);
    fflush(stdout);
    mm_board_init();
    mm_protocol_run();
    return 0;
}
