/* mm_hal.h for the host build: the "UART" is a TCP server socket on 127.0.0.1 (one client at a
 * time, like QEMU's `-serial tcp:...,server=on`), the timer is CLOCK_MONOTONIC in nanoseconds
 * (reported as cycles of a 1 GHz clock). The process exits when its stdin reaches end of file,
 * so it never outlives the test or tool that started it. POSIX only; used for fast tests. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* also on the command line: -include pulls in libc headers first */
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mm_hal.h"
#include "mm_hal_host.h"

static int listen_fd = -1, conn_fd = -1, watch_stdin = 1;
static int tx_stalled; /* the last write found the host not reading */
static uint8_t rbuf[4096];
static size_t rpos, rlen;

int mm_host_listen(int port, int watch_stdin_eof)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int one = 1;
    watch_stdin = watch_stdin_eof;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0) return -1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(listen_fd, 4) != 0) return -1;
    if (getsockname(listen_fd, (struct sockaddr *)&a, &alen) != 0) return -1;
    return ntohs(a.sin_port);
}

/* Wait up to `ms` for fd to be readable; exits the process when stdin is closed. */
static int wait_readable(int fd, int ms)
{
    struct pollfd p[2];
    int n = 1;
    p[0].fd = fd;
    p[0].events = POLLIN;
    if (watch_stdin) {
        p[1].fd = 0;
        p[1].events = POLLIN;
        n = 2;
    }
    int r = poll(p, (nfds_t)n, ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (n == 2 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
        char c;
        if (read(0, &c, 1) <= 0) exit(0);
    }
    return (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

void mm_board_init(void) {}

int mm_uart_getc(void)
{
    if (rpos < rlen) return rbuf[rpos++];
    if (conn_fd < 0) {
        if (wait_readable(listen_fd, 50) > 0) {
            conn_fd = accept(listen_fd, NULL, NULL);
            if (conn_fd >= 0) {
                int one = 1;
                setsockopt(conn_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            }
        }
        return -1;
    }
    if (wait_readable(conn_fd, 20) <= 0) return -1;
    ssize_t n = recv(conn_fd, rbuf, sizeof rbuf, 0);
    if (n <= 0) { /* the host went away: wait for the next one, as QEMU does */
        close(conn_fd);
        conn_fd = -1;
        tx_stalled = 0;
        return -1;
    }
    rpos = 1;
    rlen = (size_t)n;
    return rbuf[0];
}

/* Like a UART, never blocks for long: a host that does not read (while it floods us, say) gets
 * the rest of the reply dropped after 200 ms instead of wedging both sides; while it still does
 * not read, later replies are dropped at once (the line has no listener). */

void mm_uart_write(const uint8_t *p, uint32_t n)
{
    while (n > 0 && conn_fd >= 0) {
        struct pollfd w;
        w.fd = conn_fd;
        w.events = POLLOUT;
        int r = poll(&w, 1, tx_stalled ? 0 : 200);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || !(w.revents & POLLOUT)) {
            tx_stalled = 1;
            return; /* the host does not read: a UART loses the bytes too */
        }
        tx_stalled = 0;
        ssize_t k = send(conn_fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return; /* nobody listening: a UART loses the bytes too */
        }
        p += k;
        n -= (uint32_t)k;
    }
}

uint32_t mm_timer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

uint8_t mm_timer_unit(void)
{
    return MM_TIMER_UNIT_CYCLES;
}
uint32_t mm_timer_unit_per_tick_x1000(void)
{
    return 1000u;
}
uint32_t mm_clock_hz(void)
{
    return 1000000000u;
}
