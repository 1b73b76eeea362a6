/*
 * UDP through the preload library, call by call, as a C program sees it: run under
 * LD_PRELOAD against a kernel UDP echo server.  Prints one "ok NAME" or "FAIL NAME why"
 * line per check.  Usage: udp_probe ECHO_IP ECHO_PORT CLOSED_PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int failures;

static void check(const char *name, int ok, const char *why)
{
    if (ok) {
        printf("ok %s\n", name);
    } else {
        printf("FAIL %s %s (errno %d %s)\n", name, why, errno, strerror(errno));
        failures++;
    }
    fflush(stdout);
}

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    struct sockaddr_in echo = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &echo.sin_addr);
    struct sockaddr_in closed = echo;
    closed.sin_port = htons(atoi(argv[3]));

    int s = socket(AF_INET, SOCK_DGRAM, 0);
    check("socket", s >= 0, "socket");
    int v = 0;
    socklen_t vl = sizeof v;
    check("so_type", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl) == 0 && v == SOCK_DGRAM,
          "SO_TYPE");
    vl = sizeof v;
    check("so_protocol",
          getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &v, &vl) == 0 && v == IPPROTO_UDP,
          "SO_PROTOCOL");
    char buf[70000];
    errno = 0;
    check("unconnected_send", send(s, "x", 1, 0) < 0 && errno == EDESTADDRREQ, "send");
    struct sockaddr_in any = {.sin_family = AF_INET};
    check("bind", bind(s, (struct sockaddr *)&any, sizeof any) == 0, "bind");
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    check("getsockname",
          getsockname(s, (struct sockaddr *)&me, &ml) == 0 && me.sin_port != 0 &&
              me.sin_family == AF_INET,
          "getsockname");
    errno = 0;
    check("nothing_yet", recv(s, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN,
          "recv");

    /* Boundaries and the source address, sizes 0 to 65507. */
    static const size_t sizes[] = {3, 0, 1400, 9000, 65507};
    int bounds = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(buf, 'a' + (int)i, sizes[i]);
        if (sendto(s, buf, sizes[i], 0, (struct sockaddr *)&echo, sizeof echo) !=
            (ssize_t)sizes[i])
            bounds = 0;
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && bounds; i++) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        memset(&from, 0, sizeof from);
        if (!readable(s, 5000)) {
            bounds = 0;
            break;
        }
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n != (ssize_t)sizes[i] || fl != sizeof from || from.sin_family != AF_INET ||
            from.sin_port != echo.sin_port || from.sin_addr.s_addr != echo.sin_addr.s_addr ||
            (n > 0 && (buf[0] != 'a' + (int)i || buf[n - 1] != 'a' + (int)i)))
            bounds = 0;
    }
    check("boundaries_and_sources", bounds, "a datagram came back changed");

    /* MSG_PEEK leaves it queued. */
    sendto(s, "peekaboo", 8, 0, (struct sockaddr *)&echo, sizeof echo);
    readable(s, 5000);
    ssize_t n = recv(s, buf, 4, MSG_PEEK);
    int peeked = n == 4 && memcmp(buf, "peek", 4) == 0;
    n = recv(s, buf, sizeof buf, 0);
    check("msg_peek", peeked && n == 8 && memcmp(buf, "peekaboo", 8) == 0, "peek");

    /* A datagram longer than the buffer: cut, MSG_TRUNC says so (and with MSG_TRUNC in
     * flags the call returns its real length). */
    memset(buf, 't', 100);
    sendto(s, buf, 100, 0, (struct sockaddr *)&echo, sizeof echo);
    sendto(s, buf, 100, 0, (struct sockaddr *)&echo, sizeof echo);
    sendto(s, "after", 5, 0, (struct sockaddr *)&echo, sizeof echo);
    char small[10];
    struct iovec iov = {.iov_base = small, .iov_len = sizeof small};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    readable(s, 5000);
    n = recvmsg(s, &m, 0);
    check("cut", n == 10 && (m.msg_flags & MSG_TRUNC), "recvmsg of a long datagram");
    m.msg_flags = 0;
    readable(s, 5000);
    n = recvmsg(s, &m, MSG_TRUNC);
    check("msg_trunc_length", n == 100 && (m.msg_flags & MSG_TRUNC), "MSG_TRUNC");
    readable(s, 5000);
    n = recv(s, buf, sizeof buf, 0);
    check("next_intact", n == 5 && memcmp(buf, "after", 5) == 0, "the next datagram");

    /* sendmsg with an address and two pieces; recvmsg fills msg_name. */
    struct iovec two[2] = {{.iov_base = "ab", .iov_len = 2}, {.iov_base = "cd", .iov_len = 2}};
    struct msghdr out = {.msg_name = &echo, .msg_namelen = sizeof echo, .msg_iov = two,
                         .msg_iovlen = 2};
    check("sendmsg", sendmsg(s, &out, 0) == 4, "sendmsg");
    struct sockaddr_in from;
    struct iovec in = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr back = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &in,
                          .msg_iovlen = 1};
    readable(s, 5000);
    n = recvmsg(s, &back, 0);
    check("recvmsg", n == 4 && memcmp(buf, "abcd", 4) == 0 && back.msg_namelen == sizeof from &&
                         from.sin_port == echo.sin_port && back.msg_controllen == 0,
          "recvmsg");

    /* sendmmsg / recvmmsg. */
    struct mmsghdr vec[3];
    struct iovec piece[3];
    char in3[3][16];
    const char *words[3] = {"uno", "dos", "tres"};
    memset(vec, 0, sizeof vec);
    for (int i = 0; i < 3; i++) {
        piece[i].iov_base = (void *)words[i];
        piece[i].iov_len = strlen(words[i]);
        vec[i].msg_hdr.msg_iov = &piece[i];
        vec[i].msg_hdr.msg_iovlen = 1;
        vec[i].msg_hdr.msg_name = &echo;
        vec[i].msg_hdr.msg_namelen = sizeof echo;
    }
    check("sendmmsg", sendmmsg(s, vec, 3, 0) == 3, "sendmmsg");
    int got = 0;
    for (int tries = 0; tries < 50 && got < 3; tries++) {
        memset(vec, 0, sizeof vec);
        for (int i = 0; i < 3; i++) {
            piece[i].iov_base = in3[i];
            piece[i].iov_len = sizeof in3[i];
            vec[i].msg_hdr.msg_iov = &piece[i];
            vec[i].msg_hdr.msg_iovlen = 1;
        }
        readable(s, 5000);
        int k = recvmmsg(s, vec, (unsigned)(3 - got), MSG_WAITFORONE, NULL);
        int base = got;
        for (int i = 0; i < k && base + i < 3; i++)
            if (vec[i].msg_len == strlen(words[base + i]) &&
                memcmp(in3[i], words[base + i], vec[i].msg_len) == 0)
                got++;
        if (k <= 0)
            break;
    }
    check("recvmmsg", got == 3, "recvmmsg");

    /* select and epoll see the descriptor as the kernel's. */
    sendto(s, "sel", 3, 0, (struct sockaddr *)&echo, sizeof echo);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(s, &r);
    struct timeval tv = {.tv_sec = 5};
    int sel = select(s + 1, &r, NULL, NULL, &tv);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s}, evs[1];
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    int ready = epoll_wait(ep, evs, 1, 5000);
    close(ep);
    check("select_epoll", sel == 1 && ready == 1 && recv(s, buf, sizeof buf, 0) == 3,
          "select/epoll");

    errno = 0;
    check("emsgsize", sendto(s, buf, 65508, 0, (struct sockaddr *)&echo, sizeof echo) < 0 &&
                          errno == EMSGSIZE, "a 65508-byte datagram");
    close(s);

    /* A connected socket: send/write/read, getpeername. */
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
    check("connect", connect(c, (struct sockaddr *)&echo, sizeof echo) == 0, "connect");
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    check("getpeername", getpeername(c, (struct sockaddr *)&peer, &pl) == 0 &&
                             peer.sin_port == echo.sin_port, "getpeername");
    check("send_connected", send(c, "conn", 4, 0) == 4, "send");
    readable(c, 5000);
    n = read(c, buf, sizeof buf);
    check("read_connected", n == 4 && memcmp(buf, "conn", 4) == 0, "read");
    check("write_connected", write(c, "w!", 2) == 2, "write");
    readable(c, 5000);
    n = recv(c, buf, sizeof buf, 0);
    check("recv_connected", n == 2 && memcmp(buf, "w!", 2) == 0, "recv");
    close(c);

    /* A connected socket to a closed port: the port unreachable is ECONNREFUSED. */
    int d = socket(AF_INET, SOCK_DGRAM, 0);
    connect(d, (struct sockaddr *)&closed, sizeof closed);
    send(d, "anyone?", 7, 0);
    int woke = readable(d, 5000);
    errno = 0;
    n = recv(d, buf, sizeof buf, 0);
    check("econnrefused", woke && n < 0 && errno == ECONNREFUSED, "recv after unreachable");
    errno = 0;
    n = recv(d, buf, sizeof buf, MSG_DONTWAIT);
    check("error_reported_once", n < 0 && errno == EAGAIN, "a second recv");
    close(d);

    /* IPPROTO_ICMP (ping) and raw sockets stay refused. */
    errno = 0;
    check("ping_refused", socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) < 0 &&
                              errno == EPROTONOSUPPORT, "ping socket");
    errno = 0;
    check("raw_refused", socket(AF_INET, SOCK_RAW, IPPROTO_UDP) < 0 &&
                             errno == ESOCKTNOSUPPORT, "raw socket");
    return failures ? 1 : 0;
}
