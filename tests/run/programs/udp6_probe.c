/*
 * AF_INET6 through the preload library, call by call, as a C program sees it: run under
 * LD_PRELOAD against kernel UDP echo servers on an IPv6 and an IPv4 address.  Prints one
 * "ok NAME" or "FAIL NAME why" line per check.
 * Usage: udp6_probe ECHO6_IP ECHO6_PORT ECHO4_IP ECHO4_PORT CLOSED_PORT NAME
 * (NAME has an A record ECHO4_IP and an AAAA record ECHO6_IP).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static int same6(const struct sockaddr_in6 *a, const struct sockaddr_in6 *b)
{
    return a->sin6_family == AF_INET6 && a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
}

/* The first address of getaddrinfo(name, "80", family, flags) as text, its family in
 * *got (0 if the call failed: then the text is the EAI code). */
static void first_address(const char *name, int family, int flags, char *out, size_t n,
                          int *got, int *total, int *families)
{
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM,
                             .ai_flags = flags};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(name, "80", &hints, &res);
    *got = 0;
    *total = 0;
    *families = 0;
    if (rc != 0) {
        snprintf(out, n, "%d", rc);
        return;
    }
    *got = res->ai_family;
    if (res->ai_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)res->ai_addr;
        inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)n);
        if (res->ai_addrlen != sizeof *sin6 || ntohs(sin6->sin6_port) != 80)
            *got = -1;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)res->ai_addr;
        inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)n);
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        (*total)++;
        *families |= ai->ai_family == AF_INET6 ? 2 : 1;
    }
    freeaddrinfo(res);
}

int main(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    struct sockaddr_in6 echo = {.sin6_family = AF_INET6,
                                .sin6_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET6, argv[1], &echo.sin6_addr);
    struct sockaddr_in echo4 = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)atoi(argv[4]))};
    inet_pton(AF_INET, argv[3], &echo4.sin_addr);
    /* The IPv4 echo as an AF_INET6 socket reaches it: ::ffff:a.b.c.d */
    struct sockaddr_in6 mapped = {.sin6_family = AF_INET6, .sin6_port = echo4.sin_port};
    mapped.sin6_addr.s6_addr[10] = 0xff;
    mapped.sin6_addr.s6_addr[11] = 0xff;
    memcpy(mapped.sin6_addr.s6_addr + 12, &echo4.sin_addr, 4);
    struct sockaddr_in6 closed = echo;
    closed.sin6_port = htons((uint16_t)atoi(argv[5]));
    const char *name = argv[6];
    char text[INET6_ADDRSTRLEN];

    int s = socket(AF_INET6, SOCK_DGRAM, 0);
    check("socket", s >= 0, "socket");
    int v = -1;
    socklen_t vl = sizeof v;
    check("so_domain", getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &vl) == 0 && v == AF_INET6,
          "SO_DOMAIN");
    v = -1;
    vl = sizeof v;
    check("v6only_default",
          getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl) == 0 && v == 0, "IPV6_V6ONLY");
    v = 0;
    check("v6only_off", setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) == 0,
          "IPV6_V6ONLY");
    struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
    check("bind", bind(s, (struct sockaddr *)&any, sizeof any) == 0, "bind");
    struct sockaddr_in6 me;
    socklen_t ml = sizeof me;
    check("getsockname",
          getsockname(s, (struct sockaddr *)&me, &ml) == 0 && ml == sizeof me &&
              me.sin6_family == AF_INET6 && me.sin6_port != 0,
          "getsockname");
    v = 1;
    errno = 0;
    check("v6only_after_bind",
          setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) < 0 && errno == EINVAL,
          "IPV6_V6ONLY after bind");

    /* Boundaries and the source address, sizes 0 to 65527 (IPv6's largest). */
    static char buf[70000], back[70000];
    static const size_t sizes[] = {3, 0, 1400, 9000, 65527};
    int bounds = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(buf, 'a' + (int)i, sizes[i]);
        if (sendto(s, buf, sizes[i], 0, (struct sockaddr *)&echo, sizeof echo) !=
            (ssize_t)sizes[i]) {
            bounds = 0;
            printf("  sendto %zu failed: %s\n", sizes[i], strerror(errno));
            continue;
        }
        if (!readable(s, 10000)) {
            bounds = 0;
            printf("  no echo of %zu\n", sizes[i]);
            continue;
        }
        struct sockaddr_in6 from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, back, sizeof back, 0, (struct sockaddr *)&from, &fl);
        if (n != (ssize_t)sizes[i] || memcmp(buf, back, sizes[i]) != 0 || fl != sizeof from ||
            !same6(&from, &echo) || from.sin6_scope_id != 0) {
            bounds = 0;
            printf("  echo of %zu came back as %zd bytes\n", sizes[i], n);
        }
    }
    check("boundaries_and_sources", bounds, "echo");
    errno = 0;
    check("emsgsize", sendto(s, buf, 65528, 0, (struct sockaddr *)&echo, sizeof echo) < 0 &&
                          errno == EMSGSIZE, "65528 bytes");

    /* Dual-stack: the IPv4 echo by its mapped address, and by a plain sockaddr_in. */
    int dual = sendto(s, "four", 4, 0, (struct sockaddr *)&mapped, sizeof mapped) == 4 &&
               readable(s, 10000);
    struct sockaddr_in6 from;
    socklen_t fl = sizeof from;
    dual = dual && recvfrom(s, back, sizeof back, 0, (struct sockaddr *)&from, &fl) == 4 &&
           same6(&from, &mapped) && memcmp(back, "four", 4) == 0;
    check("mapped_ipv4", dual, "::ffff: echo");
    dual = sendto(s, "inet", 4, 0, (struct sockaddr *)&echo4, sizeof echo4) == 4 &&
           readable(s, 10000);
    fl = sizeof from;
    dual = dual && recvfrom(s, back, sizeof back, 0, (struct sockaddr *)&from, &fl) == 4 &&
           same6(&from, &mapped);
    check("sockaddr_in_on_inet6", dual, "AF_INET destination");
    errno = 0;
    check("mapped_emsgsize",
          sendto(s, buf, 65508, 0, (struct sockaddr *)&mapped, sizeof mapped) < 0 &&
              errno == EMSGSIZE,
          "65508 bytes to IPv4");

    /* Connected: send/recv without addresses, getpeername. */
    check("connect", connect(s, (struct sockaddr *)&echo, sizeof echo) == 0, "connect");
    struct sockaddr_in6 peer;
    socklen_t pl = sizeof peer;
    check("getpeername",
          getpeername(s, (struct sockaddr *)&peer, &pl) == 0 && same6(&peer, &echo),
          "getpeername");
    int conn = send(s, "hello6", 6, 0) == 6 && readable(s, 10000) &&
               recv(s, back, sizeof back, 0) == 6 && memcmp(back, "hello6", 6) == 0;
    check("connected_echo", conn, "send/recv");
    close(s);

    /* A port unreachable on a connected socket: ECONNREFUSED at the next receive. */
    int c = socket(AF_INET6, SOCK_DGRAM, 0);
    connect(c, (struct sockaddr *)&closed, sizeof closed);
    send(c, "x", 1, 0);
    errno = 0;
    check("econnrefused", readable(c, 10000) && recv(c, back, sizeof back, 0) < 0 &&
                              errno == ECONNREFUSED, "recv");
    close(c);

    /* IPv6 options on an AF_INET socket are Linux's ENOPROTOOPT; TCP over AF_INET6. */
    int four = socket(AF_INET, SOCK_DGRAM, 0);
    v = 1;
    errno = 0;
    check("v6only_on_inet", setsockopt(four, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) < 0 &&
                                errno == ENOPROTOOPT, "IPV6_V6ONLY on AF_INET");
    close(four);
    int t = socket(AF_INET6, SOCK_STREAM, 0);
    v = -1;
    vl = sizeof v;
    check("tcp6", t >= 0 && getsockopt(t, SOL_SOCKET, SO_DOMAIN, &v, &vl) == 0 &&
                      v == AF_INET6, "socket");
    errno = 0;
    check("tcp6_refuses_sockaddr_in",
          connect(t, (struct sockaddr *)&echo4, sizeof echo4) < 0 && errno == EAFNOSUPPORT,
          "connect");
    close(t);
    errno = 0;
    check("ping6_refused", socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6) < 0 &&
                               errno == EPROTONOSUPPORT, "socket");

    /* Names: AAAA through netd, both families in netd's order, literals as glibc. */
    int fam, total, families;
    first_address(name, AF_INET6, 0, text, sizeof text, &fam, &total, &families);
    check("gai_inet6", fam == AF_INET6 && strcmp(text, argv[1]) == 0 && families == 2, text);
    first_address(name, AF_UNSPEC, 0, text, sizeof text, &fam, &total, &families);
    check("gai_unspec", fam == AF_INET6 && strcmp(text, argv[1]) == 0 && families == 3, text);
    first_address(name, AF_INET, 0, text, sizeof text, &fam, &total, &families);
    check("gai_inet", fam == AF_INET && strcmp(text, argv[3]) == 0 && families == 1, text);
    first_address(argv[3], AF_INET6, 0, text, sizeof text, &fam, &total, &families);
    check("gai_v4_literal_inet6", fam == 0 && atoi(text) == EAI_ADDRFAMILY, text);
    first_address(argv[3], AF_INET6, AI_V4MAPPED, text, sizeof text, &fam, &total,
                  &families);
    char want[INET6_ADDRSTRLEN + 8];
    snprintf(want, sizeof want, "::ffff:%s", argv[3]);
    check("gai_v4mapped", fam == AF_INET6 && strcmp(text, want) == 0, text);
    first_address(argv[1], AF_INET, 0, text, sizeof text, &fam, &total, &families);
    check("gai_v6_literal_inet", fam == 0 && atoi(text) == EAI_ADDRFAMILY, text);
    first_address(NULL, AF_INET6, AI_PASSIVE, text, sizeof text, &fam, &total, &families);
    check("gai_passive6", fam == AF_INET6 && strcmp(text, "::") == 0 && total == 1, text);
    first_address("fe80::1%3", AF_INET6, AI_NUMERICHOST, text, sizeof text, &fam, &total,
                  &families);
    check("gai_zone", fam == AF_INET6 && strcmp(text, "fe80::1") == 0, text);
    struct hostent *h = gethostbyname2(name, AF_INET6);
    check("gethostbyname2",
          h != NULL && h->h_addrtype == AF_INET6 && h->h_length == 16 &&
              inet_ntop(AF_INET6, h->h_addr_list[0], text, sizeof text) != NULL &&
              strcmp(text, argv[1]) == 0,
          "AAAA");
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    check("getnameinfo",
          getnameinfo((struct sockaddr *)&echo, sizeof echo, host, sizeof host, serv,
                      sizeof serv, NI_NUMERICSERV) == 0 &&
              strcmp(host, argv[1]) == 0 && atoi(serv) == atoi(argv[2]),
          host);
    return failures ? 1 : 0;
}
