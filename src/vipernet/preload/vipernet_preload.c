/*
 * vipernet_preload.c - route an unmodified program's IPv4 and IPv6 TCP and UDP sockets
 * and name lookups through netd (issue 10).  Loaded with LD_PRELOAD by
 * `vipernet run -- PROGRAM ...`.
 *
 * How a socket works here (docs/netd-protocol.md has the messages byte by byte):
 *
 *  - socket(AF_INET, SOCK_STREAM) asks netd for a TCP socket (NET_SOCKET_CREATE) and at
 *    once for its descriptor (NET_SOCKET_ATTACH_FD): one end of a socketpair that netd
 *    pumps to the TCP connection, received as SCM_RIGHTS.  That descriptor is what
 *    socket() returns, so the program's read/write/send/recv/poll/epoll/select are plain
 *    kernel calls on it: nothing of the data path is interposed.  Before connect() what
 *    the program writes waits in it; a listener's is readable while accept would not
 *    block (netd keeps one byte unread in it while connections wait: we drain it before
 *    each ACCEPT).
 *  - socket(AF_INET6, ...) is the same with the kind's AF_INET6 bit (0x10): netd's socket
 *    is dual-stack, as Linux's are by default (IPv4 peers as ::ffff:a.b.c.d), and every
 *    address of its messages is 18 bytes (IPv6 + port) instead of 6.  IPV6_V6ONLY goes to
 *    netd.  With netd's IPv6 off (--ip6 off) netd answers EAFNOSUPPORT, and so do we.
 *  - connect, bind, listen, accept, names, options, shutdown are netd messages about the
 *    socket; we keep a table descriptor -> netd socket id.
 *  - socket(AF_INET, SOCK_DGRAM) is a UDP socket the same way, but its descriptor is a
 *    SOCK_SEQPACKET end carrying one datagram per message behind a 6-byte address (18
 *    bytes for AF_INET6): for those descriptors only, the send/recv/read/write family puts
 *    the address on and takes it off (see "The data path of UDP sockets");
 *    poll/select/epoll stay native.
 *  - The socket lives as long as its descriptor (every copy of it, in any process):
 *    close() only forgets our table entry, then closes the descriptor, and netd sees it go.
 *  - A socket of an earlier channel (a forked child's inherited sockets, or a channel
 *    that broke and was reopened) is adopted into the current one at its first netd call
 *    (NET_SOCKET_ADOPT, the descriptor as proof): a pre-fork server's children accept.
 *
 * One IPC channel per process, shared by all threads: requests carry ids, and a thread
 * waiting for its reply reads the channel for everyone if no other thread is (the
 * leader/follower scheme of vipernet/netclient/channel.py), so a thread parked in a
 * blocking accept() does not hold up another thread's connect().  The channel is opened
 * on first use, is close-on-exec, sits on a high descriptor number out of the program's
 * way, and is reopened in a forked child (pthread_atfork, and a getpid() check), whose
 * inherited sockets are then adopted.
 *
 * Not routed here, and failing as a kernel without them would (never falling back to the
 * host's TCP/IP): ping sockets (SOCK_DGRAM with IPPROTO_ICMP or IPPROTO_ICMPV6:
 * EPROTONOSUPPORT), raw and other socket types (ESOCKTNOSUPPORT).  AF_UNIX, netlink and
 * every other family pass through untouched.
 * Name lookups are netd's: NET_DNS_RESOLVE (A records) for AF_INET, NET_DNS_RESOLVE_ALL
 * (A and/or AAAA, in the order to try) for AF_UNSPEC and AF_INET6; reverse lookups and
 * raw res_query() DNS cannot be answered through netd and fail instead of leaving by the
 * host's resolver.
 *
 * Environment: VIPERNET_SOCKET (netd's IPC socket, default /run/vipernet/netd.sock),
 * VIPERNET_PRELOAD_DEBUG=1 (one stderr line per routed call).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <resolv.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* With _GNU_SOURCE, glibc declares the sockaddr arguments as transparent unions; our
 * definitions must use the same types and take the pointer out of them. */
#ifdef __CONST_SOCKADDR_ARG
#define SA_IN(arg) (arg)
#define SA_OUT(arg) (arg)
#else
#define SA_IN(arg) ((arg).__sockaddr__)
#define SA_OUT(arg) ((arg).__sockaddr__)
#endif

/* ---------------------------------------------------------------------------------- */
/* Protocol constants (src/vipernet/netd/framing.py)                                    */

enum {
    C_SOCKET_CREATE = 0x01,
    C_SOCKET_CONNECT = 0x02,
    C_SOCKET_BIND = 0x03,
    C_SOCKET_LISTEN = 0x04,
    C_SOCKET_ACCEPT = 0x05,
    C_SOCKET_CLOSE = 0x08,
    C_SOCKET_POLL = 0x09,
    C_DNS_RESOLVE = 0x14,
    C_GET_INFO = 0x29,
    C_SOCKET_GETSOCKNAME = 0x40,
    C_SOCKET_GETPEERNAME = 0x41,
    C_SOCKET_SHUTDOWN = 0x42,
    C_SOCKET_SETSOCKOPT = 0x43,
    C_SOCKET_GET_ERROR = 0x46,
    C_SOCKET_ATTACH_FD = 0x48,
    C_SOCKET_ADOPT = 0x49,
    C_DNS_RESOLVE_ALL = 0x4B,
};

#define HEADER_SIZE 12
#define FLAG_REPLY 0x01
#define KIND_TCP 1
#define KIND_UDP 2
#define KIND_INET6 0x10 /* or'ed into the kind: an AF_INET6 socket */
/* Every address in a message about a socket: IPv4 (4) + port (2), network order; an
 * AF_INET6 socket's: IPv6 (16) + port (2). */
#define ADDRESS_SIZE(six) ((six) ? 18u : 6u)
/* A UDP descriptor's messages start with such an address (all zero with port 0 from the
 * program: the connected peer; to the program: an error, u16 errno). */
#define DGRAM_HEADER_MAX 18
#define MAX_UDP_PAYLOAD 65507  /* 65535 - 20 (IPv4) - 8 (UDP) */
#define MAX_UDP6_PAYLOAD 65527 /* 65535 (IPv6 payload length, no jumbograms) - 8 (UDP) */
#define WANT_A 0x01    /* DNS_RESOLVE_ALL's families */
#define WANT_AAAA 0x02
#define TAG_IPV4 4     /* and the family tag before each address of its reply */
#define TAG_IPV6 6
/* UDP descriptors below this number are marked in a bitmap that read/write/send/recv
 * test without a lock or a system call: every other descriptor of the program goes
 * straight to libc at the cost of one load. */
#define DGRAM_MAP_FDS 65536
#define FOREVER 0xFFFFFFFFu
#define NETD_POLL_OUT 0x004
#define MAX_BODY (1u << 20)
#define MAX_NAME 253
#define MAX_ADDRESSES 64
#define DNS_TIMEOUT_MS 10000u /* the Python client's default, too */
#define DEFAULT_SOCKET "/run/vipernet/netd.sock"
/* Bodies we keep from a reply: the largest we use is DNS_RESOLVE_ALL's (1 + 64 * 17).
 * Longer bodies (error texts) are read and dropped past this. */
#define REPLY_KEEP 1096
#define FD_QUEUE 64
/* The channel goes at or above this number (below FD_SETSIZE: some programs select()
 * over every descriptor they think they have). */
#define CHANNEL_FD_BASE 900

/* ---------------------------------------------------------------------------------- */
/* The libc functions we wrap                                                           */

static int (*real_socket)(int, int, int);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_listen)(int, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_shutdown)(int, int);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static int (*real_fcntl64)(int, int, ...);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *,
                              socklen_t);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static int (*real_sendmmsg)(int, struct mmsghdr *, unsigned int, int);
static int (*real_recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real___read_chk)(int, void *, size_t, size_t);
static ssize_t (*real___recv_chk)(int, void *, size_t, size_t, int);
static ssize_t (*real___recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *,
                                      socklen_t *);
static void (*real_freeaddrinfo)(struct addrinfo *);
static int (*real_getnameinfo)(const struct sockaddr *, socklen_t, char *, socklen_t,
                               char *, socklen_t, int);

static pthread_once_t real_once = PTHREAD_ONCE_INIT;
static int debug_on;

#define LOAD(name) (*(void **)&real_##name = dlsym(RTLD_NEXT, #name))

static void load_real(void)
{
    LOAD(socket);
    LOAD(connect);
    LOAD(bind);
    LOAD(listen);
    LOAD(accept);
    LOAD(accept4);
    LOAD(getsockname);
    LOAD(getpeername);
    LOAD(setsockopt);
    LOAD(getsockopt);
    LOAD(shutdown);
    LOAD(close);
    LOAD(dup);
    LOAD(dup2);
    LOAD(dup3);
    LOAD(fcntl);
    LOAD(fcntl64);
    if (real_fcntl64 == NULL)
        real_fcntl64 = real_fcntl; /* glibc before 2.28 */
    LOAD(sendto);
    LOAD(recvfrom);
    LOAD(send);
    LOAD(recv);
    LOAD(sendmsg);
    LOAD(recvmsg);
    LOAD(sendmmsg);
    LOAD(recvmmsg);
    LOAD(read);
    LOAD(write);
    LOAD(readv);
    LOAD(writev);
    LOAD(__read_chk);
    LOAD(__recv_chk);
    LOAD(__recvfrom_chk);
    LOAD(freeaddrinfo);
    LOAD(getnameinfo);
    const char *dbg = getenv("VIPERNET_PRELOAD_DEBUG");
    debug_on = dbg != NULL && dbg[0] == '1';
}

static inline void need_real(void)
{
    pthread_once(&real_once, load_real);
}

/* One line on stderr, without stdio (the program may be using it, or have closed it). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    int saved = errno;
    ssize_t ignored = real_write != NULL ? real_write(STDERR_FILENO, line, (size_t)n) : -1;
    (void)ignored;
    errno = saved;
}

#define DEBUG(fmt, ...)                                                                \
    do {                                                                               \
        if (debug_on)                                                                  \
            say("vipernet-preload[%d]: " fmt, (int)getpid(), __VA_ARGS__);             \
    } while (0)

/* ---------------------------------------------------------------------------------- */
/* Big-endian fields                                                                    */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* An internet socket address of either family: what the table keeps, the calls fill in. */
union inet_sa {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

static socklen_t sa_size(int six)
{
    return (socklen_t)(six ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

static int is_link_local(const struct in6_addr *a)
{
    return a->s6_addr[0] == 0xfe && (a->s6_addr[1] & 0xc0) == 0x80; /* fe80::/10 */
}

static int is_mapped(const struct in6_addr *a)
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a->s6_addr, prefix, sizeof prefix) == 0;
}

/* ::ffff:a.b.c.d, the IPv4 address (network order) as an AF_INET6 socket reaches it. */
static void map_v4(struct in6_addr *out, uint32_t v4)
{
    memset(out, 0, sizeof *out);
    out->s6_addr[10] = 0xff;
    out->s6_addr[11] = 0xff;
    memcpy(out->s6_addr + 12, &v4, 4);
}

/* address: IPv4 (4, network order already) + port u16, or for an AF_INET6 socket IPv6
 * (16) + port u16.  Returns its size. */
static uint32_t put_address(unsigned char *p, const union inet_sa *a, int six)
{
    if (six) {
        memcpy(p, &a->v6.sin6_addr, 16);
        memcpy(p + 16, &a->v6.sin6_port, 2);
    } else {
        memcpy(p, &a->v4.sin_addr.s_addr, 4);
        memcpy(p + 4, &a->v4.sin_port, 2);
    }
    return ADDRESS_SIZE(six);
}

/* netd's address as the kernel reports it: an IPv6 one with flowinfo 0 and scope_id 1
 * for a link-local address (netd has one interface), else 0. */
static void get_address(const unsigned char *p, int six, union inet_sa *a)
{
    memset(a, 0, sizeof *a);
    if (six) {
        a->v6.sin6_family = AF_INET6;
        memcpy(&a->v6.sin6_addr, p, 16);
        memcpy(&a->v6.sin6_port, p + 16, 2);
        a->v6.sin6_scope_id = is_link_local(&a->v6.sin6_addr) ? 1 : 0;
    } else {
        a->v4.sin_family = AF_INET;
        memcpy(&a->v4.sin_addr.s_addr, p, 4);
        memcpy(&a->v4.sin_port, p + 4, 2);
    }
}

/* "a.b.c.d:port" or "[v6]:port", for the debug lines. */
static const char *sa_text(const union inet_sa *a, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof ip);
        snprintf(buf, n, "[%s]:%u", ip, ntohs(a->v6.sin6_port));
    } else {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof ip);
        snprintf(buf, n, "%s:%u", ip, ntohs(a->v4.sin_port));
    }
    return buf;
}

/* ---------------------------------------------------------------------------------- */
/* The IPC channel                                                                      */

/* What a caller gets back from netd. */
struct reply {
    uint16_t status; /* netd's errno (0 = success) */
    uint32_t len;    /* body bytes in buf (or in the caller's big buffer) */
    int fd;          /* the descriptor of a successful ATTACH_FD reply, else -1 */
    unsigned char buf[REPLY_KEEP];
};

/*
 * A thread's place in the queue of callers waiting for a reply.  One per thread, on the
 * heap (not the caller's stack): a signal handler may siglongjmp out of a wait (wget's
 * timeouts do), and the waiter it leaves behind must stay valid memory until the thread
 * comes back and unlinks it.  Only ever touched with chan.lock held.
 */
struct waiter {
    struct waiter *next;
    pthread_t thread;
    uint32_t id;
    int linked;            /* in chan.waiters */
    int done;
    int lost;              /* the channel broke before the reply: an errno */
    int wants_big;         /* keep a body of any length (NET_GET_INFO's report) */
    struct reply r;
    unsigned char *big;    /* that body (malloc'd by the reader), or NULL */
};

static struct {
    /* All fields below.  Held while a request goes out (a few hundred bytes, which
     * netd, never blocking, always takes) but never while waiting for a reply. */
    pthread_mutex_t lock;
    pthread_cond_t cond;       /* a reply came in, or reading is free */
    int fd;                    /* -1: not open */
    pid_t pid;                 /* the process that opened it */
    dev_t dev;                 /* to notice a program that closed it behind our back */
    ino_t ino;
    unsigned gen;              /* bumped per channel opened: sock ids belong to one */
    int reading;               /* a thread is reading replies for everyone */
    pthread_t reader;          /* which one */
    struct waiter *waiters;
    uint32_t next_id;
    int fdq[FD_QUEUE];         /* received descriptors not yet matched to a reply */
    int fdq_len;
    int warned;                /* the "cannot reach netd" line was printed */
} chan = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER,
    .fd = -1,
    .next_id = 1,
};

static const char *socket_path(void)
{
    const char *path = getenv("VIPERNET_SOCKET");
    return path != NULL && path[0] != '\0' ? path : DEFAULT_SOCKET;
}

static void fdq_close_all(void)
{
    for (int i = 0; i < chan.fdq_len; i++)
        real_close(chan.fdq[i]);
    chan.fdq_len = 0;
}

/* The channel is gone (lock held): every waiter gets `err`. */
static void chan_drop(unsigned gen, int err, int close_it)
{
    if (gen != chan.gen || chan.fd < 0)
        return;
    if (close_it)
        real_close(chan.fd);
    chan.fd = -1;
    fdq_close_all();
    for (struct waiter *w = chan.waiters; w != NULL; w = w->next) {
        if (!w->done) {
            w->done = 1;
            w->lost = err;
        }
    }
    pthread_cond_broadcast(&chan.cond);
}

/* Open a channel to netd (lock held).  0, or -errno. */
static int chan_open(void)
{
    const char *path = socket_path();
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        if (!chan.warned++)
            say("vipernet: netd's socket path is too long ($VIPERNET_SOCKET=%s)", path);
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    int fd = real_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc;
    do {
        rc = real_connect(fd, (struct sockaddr *)&sun, sizeof sun);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int err = errno;
        real_close(fd);
        if (!chan.warned++)
            say("vipernet: cannot reach netd at %s ($VIPERNET_SOCKET): %s "
                "(start it with 'vipernet netd')", path, strerror(err));
        return -err;
    }
    /* Out of the program's way: a high number it will not pick or expect to be free. */
    struct rlimit lim;
    int base = CHANNEL_FD_BASE;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (rlim_t)base >= lim.rlim_cur)
        base = lim.rlim_cur > 64 ? (int)lim.rlim_cur - 32 : 3;
    int high = real_fcntl(fd, F_DUPFD_CLOEXEC, base);
    if (high >= 0) {
        real_close(fd);
        fd = high;
    }
    int big = 1 << 20;
    real_setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        real_close(fd);
        return -err;
    }
    chan.fd = fd;
    chan.dev = st.st_dev;
    chan.ino = st.st_ino;
    chan.pid = getpid();
    chan.gen++;
    chan.warned = 0;
    DEBUG("channel to %s on fd %d", path, fd);
    return 0;
}

/* In a child after fork: the parent's channel, waiters and readers are not ours. */
static void chan_forget_parent(void)
{
    if (chan.fd >= 0)
        real_close(chan.fd); /* our copy only: the parent keeps its channel */
    chan.fd = -1;
    fdq_close_all();
    chan.waiters = NULL;
    chan.reading = 0;
    chan.gen++;
    chan.pid = getpid();
}

/* A usable channel (lock held): 0, or -errno. */
static int chan_ensure(void)
{
    if (chan.fd >= 0 && chan.pid != getpid())
        chan_forget_parent(); /* a fork that bypassed pthread_atfork (raw clone) */
    if (chan.fd >= 0) {
        struct stat st;
        if (fstat(chan.fd, &st) < 0 || st.st_dev != chan.dev || st.st_ino != chan.ino) {
            /* The program closed it (closefrom, a close loop) and may reuse the number:
             * never touch that descriptor again. */
            chan_drop(chan.gen, ECONNRESET, 0);
        }
    }
    if (chan.fd < 0)
        return chan_open();
    return 0;
}

/* Read exactly n bytes of the channel, queueing any descriptors that come along. */
static int chan_read(int fd, unsigned char *buf, size_t n)
{
    while (n > 0) {
        union {
            struct cmsghdr align;
            char space[CMSG_SPACE(sizeof(int) * 16)];
        } control;
        struct iovec iov = {.iov_base = buf, .iov_len = n};
        struct msghdr msg = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = control.space,
            .msg_controllen = sizeof control.space,
        };
        ssize_t got = real_recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            const unsigned char *data = CMSG_DATA(c);
            pthread_mutex_lock(&chan.lock);
            for (size_t i = 0; i < count; i++) {
                int passed;
                memcpy(&passed, data + i * sizeof(int), sizeof passed);
                if (chan.fdq_len < FD_QUEUE)
                    chan.fdq[chan.fdq_len++] = passed;
                else
                    real_close(passed);
            }
            pthread_mutex_unlock(&chan.lock);
        }
        if (got == 0)
            return -ECONNRESET; /* netd went away */
        buf += got;
        n -= (size_t)got;
    }
    return 0;
}

static struct waiter *waiter_for(uint32_t id)
{
    struct waiter *w = chan.waiters;
    while (w != NULL && (w->id != id || w->done))
        w = w->next;
    return w;
}

/* Read one reply and hand it to its waiter.  Called without the lock, by the reader; the
 * body is read into our own buffer and given to the waiter under the lock, if it still
 * waits (it may have been abandoned meanwhile). */
static int chan_read_one(int fd)
{
    unsigned char header[HEADER_SIZE];
    int rc = chan_read(fd, header, sizeof header);
    if (rc < 0)
        return rc;
    uint32_t len = get32(header);
    uint8_t code = header[4];
    uint8_t flags = header[5];
    uint16_t status = get16(header + 6);
    uint32_t id = get32(header + 8);
    if (len > MAX_BODY || flags != FLAG_REPLY)
        return -EPROTO;
    pthread_mutex_lock(&chan.lock);
    struct waiter *w = waiter_for(id);
    int big = w != NULL && w->wants_big;
    int passed = -1;
    if (code == C_SOCKET_ATTACH_FD && status == 0 && chan.fdq_len > 0) {
        /* Its descriptor came with its first byte (docs: "takes the next descriptor"). */
        passed = chan.fdq[0];
        memmove(chan.fdq, chan.fdq + 1, (size_t)(chan.fdq_len - 1) * sizeof(int));
        chan.fdq_len--;
    }
    pthread_mutex_unlock(&chan.lock);

    unsigned char small[REPLY_KEEP];
    unsigned char *body = small;
    uint32_t keep = len < REPLY_KEEP ? len : REPLY_KEEP;
    if (big && (body = malloc(len + 1u)) != NULL)
        keep = len;
    else
        body = small;
    if (keep > 0)
        rc = chan_read(fd, body, keep);
    for (uint32_t left = len - keep; rc == 0 && left > 0;) {
        unsigned char scrap[512];
        uint32_t step = left < sizeof scrap ? left : (uint32_t)sizeof scrap;
        rc = chan_read(fd, scrap, step);
        left -= step;
    }

    pthread_mutex_lock(&chan.lock);
    w = rc == 0 ? waiter_for(id) : NULL;
    if (w != NULL) {
        w->r.status = status;
        w->r.len = keep;
        w->r.fd = passed;
        if (body != small) {
            w->big = body;
            body = small;
        } else {
            memcpy(w->r.buf, small, keep);
        }
        w->done = 1;
        if (code == C_SOCKET_ATTACH_FD && status == 0 && passed < 0)
            w->lost = EPROTO; /* a success without its descriptor */
    } else if (passed >= 0) {
        real_close(passed); /* its caller is gone (abandoned the wait) */
    }
    pthread_mutex_unlock(&chan.lock);
    if (body != small)
        free(body);
    return rc;
}

static void unlink_waiter(struct waiter *w)
{
    for (struct waiter **p = &chan.waiters; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    w->linked = 0;
}

/*
 * A thread whose waiter is still linked when it enters ipc_call left an earlier call
 * without returning (siglongjmp from a signal handler).  Unlink it; if the thread was
 * the reader, the channel may be mid-message: drop it (lock held).
 */
static void forget_abandoned(struct waiter *w)
{
    if (w->linked)
        unlink_waiter(w);
    if (chan.reading && pthread_equal(chan.reader, w->thread)) {
        chan.reading = 0;
        chan_drop(chan.gen, ECONNRESET, 1);
    }
    if (w->r.fd >= 0 && w->done)
        real_close(w->r.fd); /* delivered after the jump: nobody will take it */
    w->r.fd = -1;
    free(w->big);
    w->big = NULL;
}

static pthread_key_t waiter_key;
static pthread_once_t waiter_once = PTHREAD_ONCE_INIT;

static void waiter_exit(void *p) /* thread exit */
{
    struct waiter *w = p;
    pthread_mutex_lock(&chan.lock);
    forget_abandoned(w);
    pthread_mutex_unlock(&chan.lock);
    free(w);
}

static void waiter_key_init(void)
{
    pthread_key_create(&waiter_key, waiter_exit);
}

static struct waiter *my_waiter(void)
{
    pthread_once(&waiter_once, waiter_key_init);
    struct waiter *w = pthread_getspecific(waiter_key);
    if (w == NULL && (w = calloc(1, sizeof *w)) != NULL) {
        w->r.fd = -1;
        if (pthread_setspecific(waiter_key, w) != 0) {
            free(w);
            return NULL;
        }
    }
    return w;
}

/*
 * Send one request and wait for its reply.  Returns 0 with *out filled in (out->status
 * is netd's errno), or -errno when netd cannot be reached.  *gen_out (if given) is the
 * channel generation the request went out on: the one its socket ids belong to; a
 * request naming a socket passes want_gen, its socket's generation (0: any).  A body
 * longer than out->buf goes to big (up to big_cap bytes), if given.
 */
static int ipc_call_full(uint8_t code, const unsigned char *body, uint32_t len,
                         struct reply *out, unsigned *gen_out, unsigned want_gen,
                         unsigned char *big, uint32_t big_cap, int pass_fd)
{
    unsigned char msg[HEADER_SIZE + 320];
    if (len > sizeof msg - HEADER_SIZE)
        return -EINVAL;
    out->status = 0;
    out->len = 0;
    out->fd = -1;
    struct waiter *w = my_waiter();
    if (w == NULL)
        return -ENOMEM;

    pthread_mutex_lock(&chan.lock);
    w->thread = pthread_self();
    forget_abandoned(w);
    int rc = chan_ensure();
    if (rc == 0 && want_gen != 0 && chan.gen != want_gen)
        rc = -EBADF; /* an id of a channel that is gone: it may name another socket now */
    if (rc < 0) {
        pthread_mutex_unlock(&chan.lock);
        return rc;
    }
    w->id = chan.next_id++;
    if (chan.next_id == 0)
        chan.next_id = 1;
    w->done = 0;
    w->lost = 0;
    w->wants_big = big != NULL;
    w->r.status = 0;
    w->r.len = 0;
    w->r.fd = -1;
    unsigned gen = chan.gen;
    if (gen_out != NULL)
        *gen_out = gen;
    put32(msg, len);
    msg[4] = code;
    msg[5] = 0;
    put16(msg + 6, 0);
    put32(msg + 8, w->id);
    if (len > 0)
        memcpy(msg + HEADER_SIZE, body, len);
    size_t total = HEADER_SIZE + len, sent = 0;
    while (sent < total) {
        /* MSG_NOSIGNAL: a netd that died must not kill the program with SIGPIPE. */
        ssize_t n;
        if (sent == 0 && pass_fd >= 0) {
            /* The descriptor goes with the request's own bytes (SOCKET_ADOPT). */
            union {
                struct cmsghdr align;
                char space[CMSG_SPACE(sizeof(int))];
            } control;
            memset(&control, 0, sizeof control);
            struct iovec iov = {.iov_base = msg, .iov_len = total};
            struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1,
                               .msg_control = control.space,
                               .msg_controllen = sizeof control.space};
            struct cmsghdr *c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &pass_fd, sizeof pass_fd);
            n = real_sendmsg(chan.fd, &m, MSG_NOSIGNAL);
        } else {
            n = real_send(chan.fd, msg + sent, total - sent, MSG_NOSIGNAL);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -ECONNRESET;
            break;
        }
        sent += (size_t)n;
    }
    if (rc < 0) {
        chan_drop(gen, ECONNRESET, 1);
        pthread_mutex_unlock(&chan.lock);
        return -ECONNRESET;
    }
    w->next = chan.waiters;
    chan.waiters = w;
    w->linked = 1;

    while (!w->done) {
        if (chan.gen != gen) {
            w->done = 1;
            w->lost = ECONNRESET;
        } else if (!chan.reading) {
            /* Nobody reads: we do, for every waiter, until our own reply is in. */
            chan.reading = 1;
            chan.reader = w->thread;
            int fd = chan.fd;
            pthread_mutex_unlock(&chan.lock);
            int err = chan_read_one(fd);
            pthread_mutex_lock(&chan.lock);
            chan.reading = 0;
            if (err < 0)
                chan_drop(gen, err == -EPROTO ? EPROTO : ECONNRESET, 1);
            pthread_cond_broadcast(&chan.cond); /* replies for others, or reading is free */
        } else {
            pthread_cond_wait(&chan.cond, &chan.lock);
        }
    }
    unlink_waiter(w);
    int lost = w->lost;
    *out = w->r;
    w->r.fd = -1;
    unsigned char *got = w->big;
    w->big = NULL;
    pthread_mutex_unlock(&chan.lock);
    if (got != NULL) {
        out->len = out->len < big_cap ? out->len : big_cap;
        memcpy(big, got, out->len);
        free(got);
    } else if (big != NULL) {
        memcpy(big, out->buf, out->len); /* short enough to have come in buf */
    }
    if (lost) {
        if (out->fd >= 0)
            real_close(out->fd);
        out->fd = -1;
        return -lost;
    }
    return 0;
}

static int ipc_call_into(uint8_t code, const unsigned char *body, uint32_t len,
                         struct reply *out, unsigned *gen_out, unsigned want_gen,
                         unsigned char *big, uint32_t big_cap)
{
    return ipc_call_full(code, body, len, out, gen_out, want_gen, big, big_cap, -1);
}

static int ipc_call(uint8_t code, const unsigned char *body, uint32_t len, struct reply *w,
                    unsigned *gen_out)
{
    return ipc_call_into(code, body, len, w, gen_out, 0, NULL, 0);
}

static unsigned chan_generation(void)
{
    pthread_mutex_lock(&chan.lock);
    if (chan.fd >= 0 && chan.pid != getpid())
        chan_forget_parent();
    unsigned gen = chan.gen;
    pthread_mutex_unlock(&chan.lock);
    return gen;
}

/* A request about socket `sock` of channel generation `gen`; returns netd's errno
 * (0 = success), or the channel's. */
static int sock_call(uint8_t code, uint32_t sock, unsigned gen, const unsigned char *extra,
                     uint32_t n, struct reply *w)
{
    unsigned char body[64];
    put32(body, sock);
    if (n > 0)
        memcpy(body + 4, extra, n);
    int rc = ipc_call_into(code, body, 4 + n, w, NULL, gen, NULL, 0);
    if (rc < 0)
        return -rc;
    return w->status;
}

/* ---------------------------------------------------------------------------------- */
/* The socket table: descriptor -> netd socket                                          */

enum {
    OPT_NODELAY,
    OPT_REUSEADDR,
    OPT_KEEPALIVE,
    OPT_RCVBUF,
    OPT_SNDBUF,
    OPT_BROADCAST,
    OPT_REUSEPORT,
    OPT_PRIORITY,
    OPT_TOS,
    OPT_KEEPIDLE,
    OPT_KEEPINTVL,
    OPT_KEEPCNT,
    OPT_QUICKACK,
    OPT_USER_TIMEOUT,
    OPT_CORK,
    OPT_DEFER_ACCEPT,
    OPT_LINGER_ON,
    OPT_LINGER_SECS,
    OPT_V6ONLY,
    OPT_TCLASS,
    NOPTS
};

struct vsock {
    int used;
    int dgram;       /* UDP: a seqpacket descriptor with an address in front of each
                        datagram; the library moves the program's data (see below) */
    int six;         /* AF_INET6: 18-byte addresses in its messages, sockaddr_in6 names */
    int listening;
    int connecting;  /* a non-blocking connect answered EINPROGRESS; SO_ERROR not read */
    int has_local;
    int has_peer;
    uint32_t id;     /* netd's socket id, valid on channel generation `gen` */
    unsigned gen;
    dev_t dev;       /* the open file this entry describes: a number the program */
    ino_t ino;       /* closed behind our back (fclose) and reused is not ours */
    union inet_sa local, peer;
    int opt[NOPTS];
    int opt_set[NOPTS];
};

static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vsock *tab;
static int tab_cap; /* read without the lock as a quick "cannot be ours" filter */
static unsigned char dgram_map[DGRAM_MAP_FDS / 8]; /* fds of UDP entries (tab_lock) */
static int dgram_high;                             /* UDP entries at DGRAM_MAP_FDS or up */

static void dgram_mark(int fd, int on) /* tab_lock held */
{
    if (fd >= DGRAM_MAP_FDS) {
        if (on)
            __atomic_add_fetch(&dgram_high, 1, __ATOMIC_RELEASE);
        else
            __atomic_sub_fetch(&dgram_high, 1, __ATOMIC_RELEASE);
        return;
    }
    unsigned char bit = (unsigned char)(1u << (fd & 7));
    if (on)
        __atomic_or_fetch(&dgram_map[fd >> 3], bit, __ATOMIC_RELEASE);
    else
        __atomic_and_fetch(&dgram_map[fd >> 3], (unsigned char)~bit, __ATOMIC_RELEASE);
}

/* Could fd be one of our UDP sockets?  No lock, no system call: the data calls ask this
 * of every descriptor the program reads or writes. */
static inline int maybe_dgram(int fd)
{
    if (fd < 0)
        return 0;
    if (fd < DGRAM_MAP_FDS)
        return __atomic_load_n(&dgram_map[fd >> 3], __ATOMIC_ACQUIRE) & (1u << (fd & 7));
    return __atomic_load_n(&dgram_high, __ATOMIC_ACQUIRE) > 0;
}

static int tab_grow(int fd)
{
    if (fd < tab_cap)
        return 0;
    int cap = tab_cap ? tab_cap : 256;
    while (cap <= fd)
        cap *= 2;
    struct vsock *bigger = realloc(tab, (size_t)cap * sizeof *tab);
    if (bigger == NULL)
        return -1;
    memset(bigger + tab_cap, 0, (size_t)(cap - tab_cap) * sizeof *tab);
    tab = bigger;
    __atomic_store_n(&tab_cap, cap, __ATOMIC_RELEASE);
    return 0;
}

static int file_id(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

/* Copy fd's entry into *out; 0 if fd is not one of ours. */
static int tab_get(int fd, struct vsock *out)
{
    if (fd < 0 || fd >= __atomic_load_n(&tab_cap, __ATOMIC_ACQUIRE))
        return 0;
    pthread_mutex_lock(&tab_lock);
    int used = tab[fd].used;
    pthread_mutex_unlock(&tab_lock);
    if (!used)
        return 0;
    dev_t dev;
    ino_t ino;
    int alive = file_id(fd, &dev, &ino) == 0;
    pthread_mutex_lock(&tab_lock);
    int ours = 0;
    if (tab[fd].used) {
        if (alive && tab[fd].dev == dev && tab[fd].ino == ino) {
            *out = tab[fd];
            ours = 1;
        } else {
            if (tab[fd].dgram)
                dgram_mark(fd, 0);
            tab[fd].used = 0; /* stale: closed without our close() seeing it */
        }
    }
    pthread_mutex_unlock(&tab_lock);
    return ours;
}

static int tab_put(int fd, const struct vsock *entry)
{
    pthread_mutex_lock(&tab_lock);
    int rc = tab_grow(fd);
    if (rc == 0) {
        if (tab[fd].used && tab[fd].dgram)
            dgram_mark(fd, 0);
        tab[fd] = *entry;
        tab[fd].used = 1;
        if (entry->dgram)
            dgram_mark(fd, 1);
    }
    pthread_mutex_unlock(&tab_lock);
    return rc;
}

/* Apply `update` to fd's entry if it still describes the same socket. */
#define TAB_UPDATE(fd, entry, stmt)                                                    \
    do {                                                                               \
        pthread_mutex_lock(&tab_lock);                                                 \
        if ((fd) < tab_cap && tab[fd].used && tab[fd].id == (entry).id &&              \
            tab[fd].gen == (entry).gen) {                                              \
            struct vsock *e = &tab[fd];                                                \
            stmt;                                                                      \
        }                                                                              \
        pthread_mutex_unlock(&tab_lock);                                               \
    } while (0)

/* Our entry for fd goes away; returns the entry it had (used = 0 if none). */
static struct vsock tab_take(int fd)
{
    struct vsock gone;
    memset(&gone, 0, sizeof gone);
    if (fd < 0 || fd >= __atomic_load_n(&tab_cap, __ATOMIC_ACQUIRE))
        return gone;
    pthread_mutex_lock(&tab_lock);
    if (tab[fd].used) {
        gone = tab[fd];
        tab[fd].used = 0;
        if (gone.dgram)
            dgram_mark(fd, 0);
    }
    pthread_mutex_unlock(&tab_lock);
    return gone;
}

/*
 * Make sure netd answers our channel about this socket (0, or an errno).  A socket of an
 * earlier channel -- inherited over fork (the parent's), or left from a channel that
 * broke -- is adopted first: NET_SOCKET_ADOPT with its descriptor as the proof of
 * possession.  Then *s (and fd's entry) carry the current channel's generation.
 */
static int ensure_own(int fd, struct vsock *s)
{
    if (s->gen == chan_generation())
        return 0;
    unsigned char body[4];
    put32(body, s->id);
    struct reply w;
    unsigned gen;
    int rc = ipc_call_full(C_SOCKET_ADOPT, body, sizeof body, &w, &gen, 0, NULL, 0, fd);
    if (rc < 0)
        return -rc;
    DEBUG("adopt fd %d (netd %u) -> %d", fd, s->id, w.status);
    if (w.status)
        return w.status;
    TAB_UPDATE(fd, *s, e->gen = gen);
    s->gen = gen;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Descriptors                                                                          */

/* NET_SOCKET_ATTACH_FD: the new descriptor (close-on-exec), or -errno. */
static int attach(uint32_t sock, unsigned gen)
{
    struct reply w;
    int err = sock_call(C_SOCKET_ATTACH_FD, sock, gen, NULL, 0, &w);
    if (err)
        return -err;
    return w.fd;
}

static int fail(int err)
{
    errno = err;
    return -1;
}

static int is_nonblocking(int fd)
{
    int status = real_fcntl(fd, F_GETFL);
    return status >= 0 && (status & O_NONBLOCK);
}

static void fill_address(const union inet_sa *a, int six, struct sockaddr *addr,
                         socklen_t *addrlen)
{
    if (addr == NULL || addrlen == NULL)
        return;
    socklen_t size = sa_size(six);
    socklen_t n = *addrlen < size ? *addrlen : size;
    memcpy(addr, a, n); /* truncated as the kernel does; *addrlen says the real size */
    *addrlen = size;
}

/* The program's address for a socket of family six (0 AF_INET, 1 AF_INET6) into *out.
 * An AF_INET6 socket takes a sockaddr_in6 (24 bytes at least: RFC 2133's, without
 * sin6_scope_id, as Linux); with `take_v4` (a UDP socket's connect and sendto, as Linux's
 * UDPv6) also a sockaddr_in, as its mapped ::ffff:a.b.c.d.  0 or an errno. */
static int inet_address(const struct sockaddr *addr, socklen_t len, int six, int take_v4,
                        union inet_sa *out)
{
    if (addr == NULL)
        return EFAULT;
    if (len < sizeof(sa_family_t))
        return EINVAL;
    memset(out, 0, sizeof *out);
    if (six && addr->sa_family == AF_INET6) {
        if (len < offsetof(struct sockaddr_in6, sin6_scope_id))
            return EINVAL;
        memcpy(&out->v6, addr, len < sizeof out->v6 ? len : sizeof out->v6);
        return 0;
    }
    if (addr->sa_family != AF_INET || (six && !take_v4))
        return EAFNOSUPPORT;
    if (len < sizeof out->v4)
        return EINVAL;
    struct sockaddr_in sin;
    memcpy(&sin, addr, sizeof sin);
    if (!six) {
        out->v4 = sin;
        return 0;
    }
    out->v6.sin6_family = AF_INET6;
    out->v6.sin6_port = sin.sin_port;
    map_v4(&out->v6.sin6_addr, sin.sin_addr.s_addr);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Socket calls                                                                         */

EXPORT int socket(int domain, int type, int protocol)
{
    need_real();
    if (domain != AF_INET && domain != AF_INET6)
        return real_socket(domain, type, protocol);
    int six = domain == AF_INET6;
    if (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC | 0xF))
        return fail(EINVAL);
    int base = type & 0xF;
    if (base == SOCK_DGRAM) {
        if (protocol != 0 && protocol != IPPROTO_UDP)
            return fail(EPROTONOSUPPORT); /* ping (IPPROTO_ICMP/ICMPV6), UDP-Lite */
    } else if (base != SOCK_STREAM) {
        return fail(ESOCKTNOSUPPORT); /* raw, seqpacket...: not in netd */
    } else if (protocol != 0 && protocol != IPPROTO_TCP) {
        return fail(EPROTONOSUPPORT); /* SCTP, MPTCP */
    }

    /* netd answers EAFNOSUPPORT for AF_INET6 when its stack has no IPv6 (--ip6 off): what
     * a kernel without IPv6 says, and never the host's. */
    unsigned char kind = (base == SOCK_DGRAM ? KIND_UDP : KIND_TCP) | (six ? KIND_INET6 : 0);
    struct reply w;
    unsigned gen;
    int rc = ipc_call(C_SOCKET_CREATE, &kind, 1, &w, &gen);
    if (rc < 0)
        return fail(-rc);
    if (w.status)
        return fail(w.status);
    if (w.len < 4)
        return fail(EPROTO);
    uint32_t id = get32(w.buf);

    int fd = attach(id, gen);
    if (fd < 0) {
        sock_call(C_SOCKET_CLOSE, id, gen, NULL, 0, &w);
        return fail(-fd);
    }
    /* attach() received it close-on-exec (no leak into a concurrent exec); then the
     * program's flags. */
    if (!(type & SOCK_CLOEXEC))
        real_fcntl(fd, F_SETFD, 0);
    if (type & SOCK_NONBLOCK)
        real_fcntl(fd, F_SETFL, O_NONBLOCK);
    struct vsock entry;
    memset(&entry, 0, sizeof entry);
    entry.id = id;
    entry.gen = gen;
    entry.dgram = base == SOCK_DGRAM;
    entry.six = six;
    if (file_id(fd, &entry.dev, &entry.ino) < 0 || tab_put(fd, &entry) < 0) {
        real_close(fd); /* its descriptor gone, netd releases the socket */
        return fail(ENOMEM);
    }
    DEBUG("socket %s%s -> fd %d (netd %u)", entry.dgram ? "udp" : "tcp", six ? "6" : "", fd,
          id);
    return fd;
}

EXPORT int connect(int fd, __CONST_SOCKADDR_ARG arg, socklen_t len)
{
    need_real();
    const struct sockaddr *addr = SA_IN(arg);
    struct vsock s;
    if (!tab_get(fd, &s))
        return real_connect(fd, addr, len);
    union inet_sa to;
    int err = inet_address(addr, len, s.six, s.dgram, &to);
    if (err)
        return fail(err);
    err = ensure_own(fd, &s);
    if (err)
        return fail(err);
    int nonblocking = is_nonblocking(fd);
    unsigned char body[4 + 18];
    put32(body, nonblocking ? 0 : FOREVER);
    uint32_t n = 4 + put_address(body + 4, &to, s.six);
    struct reply w;
    err = sock_call(C_SOCKET_CONNECT, s.id, s.gen, body, n, &w);
    char text[64];
    DEBUG("connect fd %d to %s -> %d%s", fd, sa_text(&to, text, sizeof text), err,
          nonblocking ? " (non-blocking)" : "");
    if (err == EINPROGRESS && s.connecting)
        return fail(EALREADY); /* Linux's answer while the first connect runs */
    if (err == 0 || err == EINPROGRESS) {
        TAB_UPDATE(fd, s, (e->peer = to, e->has_peer = 1, e->connecting = err != 0));
        return err ? fail(err) : 0;
    }
    if (err == EISCONN)
        TAB_UPDATE(fd, s, e->connecting = 0);
    return fail(err);
}

EXPORT int bind(int fd, __CONST_SOCKADDR_ARG arg, socklen_t len)
{
    need_real();
    const struct sockaddr *addr = SA_IN(arg);
    struct vsock s;
    if (!tab_get(fd, &s))
        return real_bind(fd, addr, len);
    union inet_sa at;
    int err = inet_address(addr, len, s.six, 0, &at);
    if (err)
        return fail(err);
    err = ensure_own(fd, &s);
    if (err)
        return fail(err);
    unsigned char body[18];
    uint32_t n = put_address(body, &at, s.six);
    struct reply w;
    err = sock_call(C_SOCKET_BIND, s.id, s.gen, body, n, &w);
    char text[64];
    DEBUG("bind fd %d to %s -> %d", fd, sa_text(&at, text, sizeof text), err);
    if (err)
        return fail(err);
    if (w.len >= ADDRESS_SIZE(s.six)) {
        get_address(w.buf, s.six, &at);
        TAB_UPDATE(fd, s, (e->local = at, e->has_local = 1));
    }
    return 0;
}

EXPORT int listen(int fd, int backlog)
{
    need_real();
    struct vsock s;
    if (!tab_get(fd, &s))
        return real_listen(fd, backlog);
    int err = ensure_own(fd, &s);
    if (err)
        return fail(err);
    if (backlog < 0 || backlog > 0xFFFF)
        backlog = 4096; /* Linux: out of range means "as many as allowed" */
    unsigned char body[2];
    put16(body, (uint16_t)backlog);
    struct reply w;
    err = sock_call(C_SOCKET_LISTEN, s.id, s.gen, body, sizeof body, &w);
    DEBUG("listen fd %d -> %d", fd, err);
    if (err)
        return fail(err);
    TAB_UPDATE(fd, s, e->listening = 1);
    return 0;
}

static int do_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
                     int four)
{
    struct vsock s;
    if (!tab_get(fd, &s))
        return four ? real_accept4(fd, addr, addrlen, flags) : real_accept(fd, addr, addrlen);
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
        return fail(EINVAL);
    if (s.dgram)
        return fail(EOPNOTSUPP);
    if (!s.listening)
        return fail(EINVAL);
    int err = ensure_own(fd, &s); /* a pre-fork server's child adopts the listener */
    if (err)
        return fail(err);
    /* The readiness byte: netd puts one back while more connections wait. */
    char drain[64];
    while (real_recv(fd, drain, sizeof drain, MSG_DONTWAIT) > 0) {
    }
    unsigned char body[4];
    put32(body, is_nonblocking(fd) ? 0 : FOREVER);
    struct reply w;
    err = sock_call(C_SOCKET_ACCEPT, s.id, s.gen, body, sizeof body, &w);
    if (err)
        return fail(err);
    if (w.len < 4 + ADDRESS_SIZE(s.six))
        return fail(EPROTO);
    uint32_t child = get32(w.buf);
    union inet_sa peer; /* the child of an AF_INET6 listener is AF_INET6 too */
    get_address(w.buf + 4, s.six, &peer);
    int cfd = attach(child, s.gen);
    if (cfd < 0) {
        sock_call(C_SOCKET_CLOSE, child, s.gen, NULL, 0, &w);
        return fail(-cfd);
    }
    /* attach() gave it close-on-exec; the program decides. */
    if (!(flags & SOCK_CLOEXEC))
        real_fcntl(cfd, F_SETFD, 0);
    if (flags & SOCK_NONBLOCK)
        real_fcntl(cfd, F_SETFL, O_NONBLOCK);
    struct vsock entry;
    memset(&entry, 0, sizeof entry);
    entry.id = child;
    entry.gen = s.gen;
    entry.six = s.six;
    entry.peer = peer;
    entry.has_peer = 1;
    if (file_id(cfd, &entry.dev, &entry.ino) < 0 || tab_put(cfd, &entry) < 0) {
        real_close(cfd); /* its descriptor gone, netd closes the socket */
        return fail(ENOMEM);
    }
    char text[64];
    DEBUG("accept fd %d -> fd %d (netd %u) from %s", fd, cfd, child,
          sa_text(&peer, text, sizeof text));
    fill_address(&peer, s.six, addr, addrlen);
    return cfd;
}

EXPORT int accept(int fd, __SOCKADDR_ARG addr, socklen_t *addrlen)
{
    need_real();
    return do_accept(fd, SA_OUT(addr), addrlen, 0, 0);
}

EXPORT int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *addrlen, int flags)
{
    need_real();
    return do_accept(fd, SA_OUT(addr), addrlen, flags, 1);
}

static int name_of(int fd, struct sockaddr *addr, socklen_t *addrlen, int peer)
{
    struct vsock s;
    if (!tab_get(fd, &s))
        return peer ? real_getpeername(fd, addr, addrlen) : real_getsockname(fd, addr, addrlen);
    if (addrlen == NULL)
        return fail(EFAULT);
    union inet_sa sin;
    if (ensure_own(fd, &s) == 0) {
        struct reply w;
        uint8_t code = peer ? C_SOCKET_GETPEERNAME : C_SOCKET_GETSOCKNAME;
        int err = sock_call(code, s.id, s.gen, NULL, 0, &w);
        if (err == EBADF) {
            /* netd released a stream that ended both ways: the names it last had. */
            if (peer ? !s.has_peer : !s.has_local)
                return fail(peer ? ENOTCONN : EBADF);
            sin = peer ? s.peer : s.local;
        } else if (err) {
            return fail(err);
        } else {
            if (w.len < ADDRESS_SIZE(s.six))
                return fail(EPROTO);
            get_address(w.buf, s.six, &sin);
            if (peer)
                TAB_UPDATE(fd, s, (e->peer = sin, e->has_peer = 1));
            else
                TAB_UPDATE(fd, s, (e->local = sin, e->has_local = 1));
        }
    } else {
        /* netd cannot answer (the socket is gone there): what we knew. */
        if (peer ? !s.has_peer : !s.has_local) {
            if (peer)
                return fail(ENOTCONN);
            memset(&sin, 0, sizeof sin);
            sin.sa.sa_family = s.six ? AF_INET6 : AF_INET;
        } else {
            sin = peer ? s.peer : s.local;
        }
    }
    fill_address(&sin, s.six, addr, addrlen);
    return 0;
}

EXPORT int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *addrlen)
{
    need_real();
    return name_of(fd, SA_OUT(addr), addrlen, 0);
}

EXPORT int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *addrlen)
{
    need_real();
    return name_of(fd, SA_OUT(addr), addrlen, 1);
}

EXPORT int shutdown(int fd, int how)
{
    need_real();
    struct vsock s;
    if (!tab_get(fd, &s))
        return real_shutdown(fd, how);
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return fail(EINVAL);
    struct reply w;
    if (!s.listening && !s.has_peer)
        return fail(ENOTCONN); /* the socketpair is "connected"; the TCP socket is not */
    if (s.dgram) {
        /* Never on the descriptor: netd would read its end as the socket's close.  netd
         * shuts reading; writing is not shut (what is sent still goes out). */
        if ((how == SHUT_RD || how == SHUT_RDWR) && ensure_own(fd, &s) == 0) {
            unsigned char body[1] = {SHUT_RD};
            int err = sock_call(C_SOCKET_SHUTDOWN, s.id, s.gen, body, 1, &w);
            if (err)
                return fail(err);
        }
        return 0;
    }
    if (s.listening) {
        if (ensure_own(fd, &s) != 0)
            return fail(ENOTCONN);
        unsigned char body[1] = {(unsigned char)how};
        int err = sock_call(C_SOCKET_SHUTDOWN, s.id, s.gen, body, 1, &w);
        return err ? fail(err) : 0;
    }
    if ((how == SHUT_RD || how == SHUT_RDWR) && ensure_own(fd, &s) == 0) {
        /* netd takes only the reading half by message; writing ends on the descriptor. */
        unsigned char body[1] = {SHUT_RD};
        int err = sock_call(C_SOCKET_SHUTDOWN, s.id, s.gen, body, 1, &w);
        if (err && err != EBADF && err != ENOTCONN)
            return fail(err);
    }
    /* SHUT_WR: a FIN once netd has sent what was written before it. */
    return real_shutdown(fd, how);
}

/* ---------------------------------------------------------------------------------- */
/* Socket options                                                                       */

/*
 * What each option does here:
 *  - netd != 0: sent to netd (NET_SOCKET_SETSOCKOPT, the SockOpt enum of framing.py).
 *  - netd == 0: accepted and remembered (getsockopt reports it), no effect: they tune
 *    things netd does its own way and a program works the same without them --
 *    SO_REUSEPORT (load-sharing binds; a second bind then fails loudly with EADDRINUSE),
 *    SO_PRIORITY, IP_TOS and IPV6_TCLASS (queueing/QoS marks: netd's packets carry 0),
 *    TCP_KEEPIDLE/INTVL/CNT (netd's keepalive keeps its own timing once SO_KEEPALIVE is
 *    on), TCP_QUICKACK, TCP_CORK and TCP_DEFER_ACCEPT (latency/batching hints),
 *    TCP_USER_TIMEOUT (netd's retransmission limits decide when a dead peer is
 *    reported), SO_LINGER (close still sends what was written, then a FIN; a RST if the
 *    peer's data was left unread).
 * SO_RCVTIMEO/SO_SNDTIMEO/SO_RCVLOWAT act on the descriptor (the program's own reads and
 * writes); anything else is ENOPROTOOPT, so a program never believes in an option that
 * is not there.  IPPROTO_IPV6 options are an AF_INET6 socket's only (ENOPROTOOPT on an
 * AF_INET one, as Linux): IPV6_V6ONLY goes to netd (EINVAL once bound or connected).
 */
struct option_rule {
    int level, name;
    int slot;
    int netd;
    int initial;
};

static const struct option_rule RULES[] = {
    {IPPROTO_TCP, TCP_NODELAY, OPT_NODELAY, 1, 0},
    {SOL_SOCKET, SO_REUSEADDR, OPT_REUSEADDR, 2, 0},
    {SOL_SOCKET, SO_KEEPALIVE, OPT_KEEPALIVE, 3, 0},
    {SOL_SOCKET, SO_RCVBUF, OPT_RCVBUF, 4, 131072},
    {SOL_SOCKET, SO_SNDBUF, OPT_SNDBUF, 5, 16384},
    {SOL_SOCKET, SO_BROADCAST, OPT_BROADCAST, 6, 0},
    {SOL_SOCKET, SO_REUSEPORT, OPT_REUSEPORT, 0, 0},
    {SOL_SOCKET, SO_PRIORITY, OPT_PRIORITY, 0, 0},
    {IPPROTO_IP, IP_TOS, OPT_TOS, 0, 0},
    {IPPROTO_TCP, TCP_KEEPIDLE, OPT_KEEPIDLE, 0, 7200},
    {IPPROTO_TCP, TCP_KEEPINTVL, OPT_KEEPINTVL, 0, 75},
    {IPPROTO_TCP, TCP_KEEPCNT, OPT_KEEPCNT, 0, 9},
    {IPPROTO_TCP, TCP_QUICKACK, OPT_QUICKACK, 0, 1},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, OPT_USER_TIMEOUT, 0, 0},
    {IPPROTO_TCP, TCP_CORK, OPT_CORK, 0, 0},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, OPT_DEFER_ACCEPT, 0, 0},
    {IPPROTO_IPV6, IPV6_V6ONLY, OPT_V6ONLY, 7, 0}, /* Linux's bindv6only default: off */
    {IPPROTO_IPV6, IPV6_TCLASS, OPT_TCLASS, 0, 0},
};

static const struct option_rule *rule_for(int level, int name)
{
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++)
        if (RULES[i].level == level && RULES[i].name == name)
            return &RULES[i];
    return NULL;
}

static int on_descriptor(int level, int name)
{
    if (level != SOL_SOCKET)
        return 0;
#ifdef SO_RCVTIMEO_NEW
    if (name == SO_RCVTIMEO_NEW || name == SO_SNDTIMEO_NEW)
        return 1;
#endif
    return name == SO_RCVTIMEO || name == SO_SNDTIMEO || name == SO_RCVLOWAT;
}

/*
 * Broadcast and multicast options of a UDP socket, as netd's SETSOCKOPT extensions 8-21
 * take them (docs/netd-protocol.md, "Multicast socket options"): the int ones (TTL,
 * LOOP, ALL, the IPv6 hops and loop) as an i32, which Linux also accepts as one byte for
 * IP_MULTICAST_TTL/LOOP; the struct ones (ip_mreq, ip_mreqn, ip_mreq_source, ipv6_mreq,
 * the IP_MULTICAST_IF address) byte for byte, for netd to read as Linux would.  Netd's
 * answer is the errno, so a C program hears what a Python one does.
 */
#define NOT_MULTICAST (-2)

struct multicast_rule {
    int level, name;
    int netd;
    int is_struct;
};

static const struct multicast_rule MULTICAST_RULES[] = {
    {IPPROTO_IP, IP_MULTICAST_TTL, 8, 0},
    {IPPROTO_IP, IP_MULTICAST_LOOP, 9, 0},
    {IPPROTO_IP, IP_MULTICAST_ALL, 10, 0},
    {IPPROTO_IP, IP_MULTICAST_IF, 11, 1},
    {IPPROTO_IP, IP_ADD_MEMBERSHIP, 12, 1},
    {IPPROTO_IP, IP_DROP_MEMBERSHIP, 13, 1},
    {IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, 14, 1},
    {IPPROTO_IP, IP_DROP_SOURCE_MEMBERSHIP, 15, 1},
    {IPPROTO_IP, IP_BLOCK_SOURCE, 16, 1},
    {IPPROTO_IP, IP_UNBLOCK_SOURCE, 17, 1},
    {IPPROTO_IPV6, IPV6_JOIN_GROUP, 18, 1},
    {IPPROTO_IPV6, IPV6_LEAVE_GROUP, 19, 1},
    {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 20, 0},
    {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 21, 0},
};

static int multicast_setsockopt(int fd, struct vsock *s, int level, int name,
                                const void *value, socklen_t len)
{
    const struct multicast_rule *rule = NULL;
    for (size_t i = 0; i < sizeof MULTICAST_RULES / sizeof MULTICAST_RULES[0]; i++)
        if (MULTICAST_RULES[i].level == level && MULTICAST_RULES[i].name == name)
            rule = &MULTICAST_RULES[i];
    if (rule == NULL)
        return NOT_MULTICAST;
    if (level == IPPROTO_IPV6 && !s->six)
        return fail(ENOPROTOOPT);
    unsigned char body[2 + 64];
    size_t size;
    put16(body, (uint16_t)rule->netd);
    if (rule->is_struct) {
        if (len == 0 || len > 64)
            return fail(EINVAL);
        memcpy(body + 2, value, len);
        size = 2 + (size_t)len;
    } else {
        int v;
        if (len >= sizeof(int))
            memcpy(&v, value, sizeof v);
        else if (len == 1 && level == IPPROTO_IP)
            v = *(const unsigned char *)value;
        else
            return fail(EINVAL);
        put32(body + 2, (uint32_t)v);
        size = 6;
    }
    int err = ensure_own(fd, s);
    if (err)
        return fail(err);
    struct reply w;
    err = sock_call(C_SOCKET_SETSOCKOPT, s->id, s->gen, body, size, &w);
    return err ? fail(err) : 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    need_real();
    struct vsock s;
    if (!tab_get(fd, &s))
        return real_setsockopt(fd, level, name, value, len);
    if (on_descriptor(level, name))
        return real_setsockopt(fd, level, name, value, len);
    if (value == NULL)
        return fail(EFAULT);
    if (level == SOL_SOCKET && name == SO_LINGER) {
        struct linger lg;
        if (len < sizeof lg)
            return fail(EINVAL);
        memcpy(&lg, value, sizeof lg);
        TAB_UPDATE(fd, s, (e->opt[OPT_LINGER_ON] = lg.l_onoff,
                           e->opt[OPT_LINGER_SECS] = lg.l_linger,
                           e->opt_set[OPT_LINGER_ON] = 1));
        return 0;
    }
    if (s.dgram) {
        int handled = multicast_setsockopt(fd, &s, level, name, value, len);
        if (handled != NOT_MULTICAST)
            return handled;
    }
    const struct option_rule *rule = rule_for(level, name);
    if (rule == NULL || (s.dgram && level == IPPROTO_TCP) ||
        (!s.six && level == IPPROTO_IPV6)) {
        DEBUG("setsockopt fd %d (%d, %d): not supported", fd, level, name);
        return fail(ENOPROTOOPT);
    }
    if (len < sizeof(int))
        return fail(EINVAL);
    int v;
    memcpy(&v, value, sizeof v);
    /* netd's UDP socket takes SO_RCVBUF, SO_REUSEADDR, SO_BROADCAST and IPV6_V6ONLY; the
     * others are remembered only, as for TCP's no-effect options. */
    int to_netd = rule->netd && (!s.dgram || rule->slot == OPT_RCVBUF ||
                                 rule->slot == OPT_REUSEADDR || rule->slot == OPT_BROADCAST ||
                                 rule->slot == OPT_V6ONLY);
    if (to_netd && ensure_own(fd, &s) == 0) {
        unsigned char body[6];
        put16(body, (uint16_t)rule->netd);
        put32(body + 2, (uint32_t)v);
        struct reply w;
        int err = sock_call(C_SOCKET_SETSOCKOPT, s.id, s.gen, body, sizeof body, &w);
        if (err == EBADF)
            err = 0; /* a stream netd already released: nothing left to tune */
        if (err)
            return fail(err);
    }
    TAB_UPDATE(fd, s, (e->opt[rule->slot] = v, e->opt_set[rule->slot] = 1));
    return 0;
}

static int put_int(void *value, socklen_t *len, int v)
{
    if (value == NULL || len == NULL)
        return fail(EFAULT);
    socklen_t n = *len < sizeof v ? *len : (socklen_t)sizeof v;
    memcpy(value, &v, n);
    *len = n;
    return 0;
}

/* SO_ERROR: a non-blocking connect's result (waiting for it), or a pending error. */
static int socket_error(int fd, struct vsock *s)
{
    if (ensure_own(fd, s) != 0)
        return 0;
    struct reply w;
    if (s->connecting) {
        /* The descriptor is writable before the handshake ends, so a program that
         * polled it asks early: wait here for the connect to finish, so the answer is
         * the final one (0 or ECONNREFUSED...), never "still in progress". */
        unsigned char body[12];
        put32(body, FOREVER);
        put16(body + 4, 1);
        put32(body + 6, s->id);
        put16(body + 10, NETD_POLL_OUT);
        int rc = ipc_call_into(C_SOCKET_POLL, body, sizeof body, &w, NULL, s->gen, NULL, 0);
        if (rc < 0)
            return -rc;
        TAB_UPDATE(fd, *s, e->connecting = 0);
    }
    int err = sock_call(C_SOCKET_GET_ERROR, s->id, s->gen, NULL, 0, &w);
    if (err == EBADF)
        return 0; /* released after a clean end both ways: no error left */
    if (err)
        return err;
    return w.len >= 2 ? get16(w.buf) : 0;
}

EXPORT int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
    need_real();
    struct vsock s;
    if (!tab_get(fd, &s))
        return real_getsockopt(fd, level, name, value, len);
    if (on_descriptor(level, name))
        return real_getsockopt(fd, level, name, value, len);
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_ERROR: {
            int err = socket_error(fd, &s);
            DEBUG("SO_ERROR fd %d -> %d", fd, err);
            return put_int(value, len, err);
        }
        case SO_TYPE:
            return put_int(value, len, s.dgram ? SOCK_DGRAM : SOCK_STREAM);
        case SO_DOMAIN:
            return put_int(value, len, s.six ? AF_INET6 : AF_INET);
        case SO_PROTOCOL:
            return put_int(value, len, s.dgram ? IPPROTO_UDP : IPPROTO_TCP);
        case SO_ACCEPTCONN:
            return put_int(value, len, s.listening);
        case SO_LINGER: {
            if (value == NULL || len == NULL)
                return fail(EFAULT);
            struct linger lg = {.l_onoff = s.opt[OPT_LINGER_ON],
                                .l_linger = s.opt[OPT_LINGER_SECS]};
            socklen_t n = *len < sizeof lg ? *len : (socklen_t)sizeof lg;
            memcpy(value, &lg, n);
            *len = n;
            return 0;
        }
        default:
            break;
        }
    }
    const struct option_rule *rule = rule_for(level, name);
    if (rule == NULL || (!s.six && level == IPPROTO_IPV6))
        return fail(ENOPROTOOPT);
    return put_int(value, len, s.opt_set[rule->slot] ? s.opt[rule->slot] : rule->initial);
}

/* ---------------------------------------------------------------------------------- */
/* Descriptor bookkeeping: close and the dup family                                     */

static int is_channel(int fd)
{
    return fd >= 0 && fd == __atomic_load_n(&chan.fd, __ATOMIC_ACQUIRE) &&
           chan.pid == getpid();
}

/* The program wants our channel's number (dup2 onto it): move the channel first. */
static void move_channel_off(int fd)
{
    pthread_mutex_lock(&chan.lock);
    if (chan.fd == fd && chan.pid == getpid()) {
        int moved = real_fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
        if (moved >= 0) {
            /* Only a thread reading right now still uses the old number, for the rest
             * of one message; the programs that dup2 onto numbers they did not open
             * (shells: `exec 900>file`) are single-threaded. */
            __atomic_store_n(&chan.fd, moved, __ATOMIC_RELEASE);
        } else {
            chan_drop(chan.gen, ECONNRESET, 0); /* the program's dup2 closes it */
        }
    }
    pthread_mutex_unlock(&chan.lock);
}

/* fd's entry is gone.  netd is not told: the socket lives as long as its descriptor, and
 * another copy of it (a dup, a forked child) may still be open. */
static void forget(int fd)
{
    struct vsock gone = tab_take(fd);
    if (gone.used)
        DEBUG("close fd %d (netd %u)", fd, gone.id);
}

EXPORT int close(int fd)
{
    need_real();
    if (is_channel(fd))
        return 0; /* a program closing "every descriptor" must not cut us off */
    forget(fd);
    return real_close(fd);
}

static void copy_entry(int from, int to)
{
    struct vsock s;
    if (to >= 0 && tab_get(from, &s))
        tab_put(to, &s);
}

EXPORT int dup(int fd)
{
    need_real();
    int out = real_dup(fd);
    if (out >= 0)
        copy_entry(fd, out);
    return out;
}

EXPORT int dup2(int fd, int to)
{
    need_real();
    if (fd != to && is_channel(to))
        move_channel_off(to);
    int out = real_dup2(fd, to);
    if (out >= 0 && fd != to) {
        forget(to); /* the file that was there is closed */
        copy_entry(fd, out);
    }
    return out;
}

EXPORT int dup3(int fd, int to, int flags)
{
    need_real();
    if (fd != to && is_channel(to))
        move_channel_off(to);
    int out = real_dup3(fd, to, flags);
    if (out >= 0) {
        forget(to);
        copy_entry(fd, out);
    }
    return out;
}

/* Every fcntl argument is passed on as glibc itself reads it: one pointer-sized word. */
static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, void *arg)
{
    int out = real(fd, cmd, arg);
    if (out >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
        copy_entry(fd, out);
    return out;
}

EXPORT int fcntl(int fd, int cmd, ...)
{
    need_real();
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl, fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
    need_real();
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl64, fd, cmd, arg);
}

/* ---------------------------------------------------------------------------------- */
/* The data path of UDP sockets                                                         */

/*
 * A TCP socket's bytes are plain reads and writes of its descriptor; a UDP socket's are
 * not quite: netd's datagram descriptor (SOCK_SEQPACKET) carries one datagram per
 * message, each behind a 6-byte address (18 bytes on an AF_INET6 socket).  So for UDP
 * descriptors only (maybe_dgram: one bitmap load for every other descriptor) the library
 * puts the address in front of what the program sends -- sendto's, sendmsg's, or the
 * all-zero address with port 0 for the connected peer -- and takes it off what it
 * receives, giving it as the source address.  A message from 0.0.0.0:0 (or [::]:0) is an
 * error netd passes in the stream (a u16 errno: ECONNREFUSED after a
 * port unreachable on a connected socket...): the receive call fails with it, as
 * Linux's does with the socket's pending error.  Boundaries are the kernel's: a
 * datagram longer than the buffer is cut (MSG_TRUNC in msg_flags, its real length
 * returned with MSG_TRUNC in flags, as Linux does); MSG_PEEK leaves it queued.
 */

#define DGRAM_IOV_SMALL 16

/* fd's entry if it is one of our UDP sockets. */
static int dgram_get(int fd, struct vsock *s)
{
    return maybe_dgram(fd) && tab_get(fd, s) && s->dgram;
}

static size_t iov_total(const struct iovec *iov, size_t count)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += iov[i].iov_len;
    return total;
}

/* One datagram of the program's iov to `to` (NULL: the connected peer). */
static ssize_t dgram_send(const struct vsock *s, int fd, const struct iovec *iov,
                          size_t count, int flags, const struct sockaddr *to,
                          socklen_t tolen)
{
    unsigned char header[DGRAM_HEADER_MAX];
    size_t header_size = ADDRESS_SIZE(s->six);
    memset(header, 0, sizeof header);
    union inet_sa sin;
    const union inet_sa *dest = &s->peer;
    if (to != NULL) {
        int err = inet_address(to, tolen, s->six, 1, &sin);
        if (err)
            return fail(err);
        if (sin.v4.sin_port == 0) /* the same offset in sockaddr_in6 */
            return fail(EINVAL); /* Linux: no datagram to port 0 */
        put_address(header, &sin, s->six);
        dest = &sin;
    } else if (!s->has_peer) {
        return fail(EDESTADDRREQ);
    }
    if (flags & (MSG_OOB | MSG_FASTOPEN))
        return fail(EOPNOTSUPP);
    if (count >= IOV_MAX)
        return fail(EMSGSIZE);
    /* An IPv4 datagram (an AF_INET socket's, or a mapped destination's) is smaller. */
    size_t limit = s->six && !is_mapped(&dest->v6.sin6_addr) ? MAX_UDP6_PAYLOAD
                                                              : MAX_UDP_PAYLOAD;
    if (iov_total(iov, count) > limit)
        return fail(EMSGSIZE);
    struct iovec small[DGRAM_IOV_SMALL + 1];
    struct iovec *all = small;
    if (count + 1 > sizeof small / sizeof small[0]) {
        all = malloc((count + 1) * sizeof *all);
        if (all == NULL)
            return fail(ENOBUFS);
    }
    all[0].iov_base = header;
    all[0].iov_len = header_size;
    if (count > 0)
        memcpy(all + 1, iov, count * sizeof *iov);
    struct msghdr m = {.msg_iov = all, .msg_iovlen = count + 1};
    /* A UDP socket never raises SIGPIPE; MSG_MORE (corking) is not kept: each call is a
     * datagram. */
    ssize_t n = real_sendmsg(fd, &m, (flags & MSG_DONTWAIT) | MSG_NOSIGNAL);
    int saved = errno;
    if (all != small)
        free(all);
    if (n < 0) {
        errno = saved == EPIPE ? ECONNRESET : saved; /* netd let the socket go */
        return -1;
    }
    return n >= (ssize_t)header_size ? n - (ssize_t)header_size : 0;
}

/* Copy `n` bytes at `offset` of the iov chain into out; how many there were. */
static size_t iov_gather(const struct iovec *iov, size_t count, size_t offset,
                         unsigned char *out, size_t n)
{
    size_t done = 0;
    for (size_t i = 0; i < count && done < n; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t take = iov[i].iov_len - offset;
        if (take > n - done)
            take = n - done;
        memcpy(out + done, (unsigned char *)iov[i].iov_base + offset, take);
        done += take;
        offset = 0;
    }
    return done;
}

/*
 * One datagram into the program's iov.  *from gets its source, *msg_flags MSG_TRUNC if it
 * was cut.  Returns its length (the full one with MSG_TRUNC in flags) or -1.
 */
static ssize_t dgram_recv(int fd, int six, const struct iovec *iov, size_t count, int flags,
                          union inet_sa *from, int *msg_flags)
{
    if (flags & MSG_OOB)
        return fail(EOPNOTSUPP);
    if (flags & MSG_ERRQUEUE)
        return fail(EAGAIN); /* errors come in the stream, not in an error queue */
    if (count >= IOV_MAX)
        return fail(EMSGSIZE);
    size_t room = iov_total(iov, count);
    size_t header_size = ADDRESS_SIZE(six);
    unsigned char header[DGRAM_HEADER_MAX];
    unsigned char spare[2]; /* an error's errno, when the program's buffer is smaller */
    struct iovec small[DGRAM_IOV_SMALL + 2];
    struct iovec *all = small;
    if (count + 2 > sizeof small / sizeof small[0]) {
        all = malloc((count + 2) * sizeof *all);
        if (all == NULL)
            return fail(ENOBUFS);
    }
    all[0].iov_base = header;
    all[0].iov_len = header_size;
    if (count > 0)
        memcpy(all + 1, iov, count * sizeof *iov);
    size_t used = count + 1;
    if (room < sizeof spare) {
        all[used].iov_base = spare;
        all[used].iov_len = sizeof spare;
        used++;
    }
    int pass = flags & (MSG_PEEK | MSG_DONTWAIT);
    ssize_t n;
    for (;;) {
        struct msghdr m = {.msg_iov = all, .msg_iovlen = used};
        /* MSG_TRUNC: the kernel says the datagram's whole length, cut or not. */
        n = real_recvmsg(fd, &m, pass | MSG_TRUNC);
        if (n < 0 || n >= (ssize_t)header_size)
            break;
        if (n == 0) { /* netd closed its end: the socket is gone */
            errno = EBADF;
            n = -1;
            break;
        }
        if (pass & MSG_PEEK) /* netd never sends these; drop it */
            real_recv(fd, header, sizeof header, MSG_DONTWAIT);
    }
    int saved = errno;
    if (n >= (ssize_t)header_size) {
        static const unsigned char none[DGRAM_HEADER_MAX];
        size_t length = (size_t)n - header_size;
        if (memcmp(header, none, header_size) == 0) {
            /* An error in the stream: the call fails with it, and it is gone (also when
             * peeking, as Linux's pending error is). */
            unsigned char code[2] = {0, 0};
            size_t got = iov_gather(all + 1, used - 1, 0, code,
                                    length < sizeof code ? length : sizeof code);
            if (pass & MSG_PEEK)
                real_recv(fd, header, sizeof header, MSG_DONTWAIT);
            saved = got == sizeof code && get16(code) ? get16(code) : EIO;
            n = -1;
        } else {
            if (from != NULL)
                get_address(header, six, from);
            if (msg_flags != NULL && length > room)
                *msg_flags |= MSG_TRUNC;
            n = (flags & MSG_TRUNC) || length <= room ? (ssize_t)length : (ssize_t)room;
        }
    }
    if (all != small)
        free(all);
    errno = saved;
    return n;
}

/* A connected TCP socket ignores sendto's address; the socketpair would refuse it
 * (EISCONN), so it is dropped here.  Only calls that pass an address are looked at. */
EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG arg,
                      socklen_t len)
{
    need_real();
    const struct sockaddr *addr = SA_IN(arg);
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
        return dgram_send(&s, fd, &iov, 1, flags, addr, len);
    }
    if (addr != NULL && tab_get(fd, &s)) {
        if (flags & MSG_FASTOPEN)
            return fail(EOPNOTSUPP);
        if (!s.has_peer)
            return fail(EPIPE); /* Linux, for a TCP socket not connected */
        return real_sendto(fd, buf, n, flags, NULL, 0);
    }
    return real_sendto(fd, buf, n, flags, addr, len);
}

EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    need_real();
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
        return dgram_send(&s, fd, &iov, 1, flags, NULL, 0);
    }
    return real_send(fd, buf, n, flags);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    need_real();
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
        return dgram_send(&s, fd, &iov, 1, 0, NULL, 0);
    }
    return real_write(fd, buf, n);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int count)
{
    need_real();
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        if (count < 0)
            return fail(EINVAL);
        return dgram_send(&s, fd, iov, (size_t)count, 0, NULL, 0);
    }
    return real_writev(fd, iov, count);
}

/* sendmsg: UDP as sendto; a TCP socket ignores an address (as Linux's does).  Ancillary
 * data (IP_PKTINFO, IP_TOS...) on a UDP socket is not carried. */
EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    need_real();
    struct vsock s;
    if (msg != NULL && maybe_dgram(fd) && dgram_get(fd, &s))
        return dgram_send(&s, fd, msg->msg_iov, msg->msg_iovlen, flags,
                          (const struct sockaddr *)msg->msg_name, msg->msg_namelen);
    if (msg != NULL && msg->msg_name != NULL && tab_get(fd, &s)) {
        if (!s.has_peer)
            return fail(EPIPE);
        struct msghdr plain = *msg;
        plain.msg_name = NULL;
        plain.msg_namelen = 0;
        return real_sendmsg(fd, &plain, flags);
    }
    return real_sendmsg(fd, msg, flags);
}

EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned int count, int flags)
{
    need_real();
    struct vsock s;
    if (!(maybe_dgram(fd) && dgram_get(fd, &s)))
        return real_sendmmsg(fd, vec, count, flags);
    unsigned int done = 0;
    for (; done < count; done++) {
        struct msghdr *m = &vec[done].msg_hdr;
        ssize_t n = dgram_send(&s, fd, m->msg_iov, m->msg_iovlen, flags,
                               (const struct sockaddr *)m->msg_name, m->msg_namelen);
        if (n < 0)
            return done > 0 ? (int)done : -1;
        vec[done].msg_len = (unsigned int)n;
    }
    return (int)done;
}

/* TCP's recvfrom gives no source address; the socketpair would give an AF_UNIX one. */
EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, __SOCKADDR_ARG arg,
                        socklen_t *len)
{
    need_real();
    struct sockaddr *addr = SA_OUT(arg);
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        struct iovec iov = {.iov_base = buf, .iov_len = n};
        union inet_sa from;
        ssize_t got = dgram_recv(fd, s.six, &iov, 1, flags, &from, NULL);
        if (got >= 0)
            fill_address(&from, s.six, addr, len);
        return got;
    }
    if (addr != NULL && len != NULL && tab_get(fd, &s)) {
        ssize_t got = real_recvfrom(fd, buf, n, flags, NULL, NULL);
        if (got >= 0)
            *len = 0;
        return got;
    }
    return real_recvfrom(fd, buf, n, flags, addr, len);
}

EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    need_real();
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        struct iovec iov = {.iov_base = buf, .iov_len = n};
        return dgram_recv(fd, s.six, &iov, 1, flags, NULL, NULL);
    }
    return real_recv(fd, buf, n, flags);
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    need_real();
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        struct iovec iov = {.iov_base = buf, .iov_len = n};
        return dgram_recv(fd, s.six, &iov, 1, 0, NULL, NULL);
    }
    return real_read(fd, buf, n);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int count)
{
    need_real();
    struct vsock s;
    if (maybe_dgram(fd) && dgram_get(fd, &s)) {
        if (count < 0)
            return fail(EINVAL);
        return dgram_recv(fd, s.six, iov, (size_t)count, 0, NULL, NULL);
    }
    return real_readv(fd, iov, count);
}

/* recvmsg: UDP as recvfrom, no ancillary data (IP_PKTINFO, timestamps) comes with it;
 * a TCP socket gives no address (the socketpair's would be AF_UNIX). */
EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    need_real();
    struct vsock s;
    if (msg != NULL && maybe_dgram(fd) && dgram_get(fd, &s)) {
        union inet_sa from;
        int out_flags = 0;
        ssize_t got = dgram_recv(fd, s.six, msg->msg_iov, msg->msg_iovlen, flags, &from,
                                 &out_flags);
        if (got >= 0) {
            if (msg->msg_name != NULL)
                fill_address(&from, s.six, (struct sockaddr *)msg->msg_name,
                             &msg->msg_namelen);
            else
                msg->msg_namelen = 0;
            msg->msg_controllen = 0;
            msg->msg_flags = out_flags;
        }
        return got;
    }
    if (msg != NULL && msg->msg_name != NULL && tab_get(fd, &s)) {
        ssize_t got = real_recvmsg(fd, msg, flags);
        if (got >= 0)
            msg->msg_namelen = 0;
        return got;
    }
    return real_recvmsg(fd, msg, flags);
}

/* recvmmsg: datagrams one by one; after the first, only those already queued when
 * MSG_WAITFORONE is given (the timeout is not kept: like Linux's, it is only looked at
 * between datagrams). */
EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int count, int flags,
                    struct timespec *timeout)
{
    need_real();
    struct vsock s;
    if (!(maybe_dgram(fd) && dgram_get(fd, &s)))
        return real_recvmmsg(fd, vec, count, flags, timeout);
    unsigned int done = 0;
    int each = flags & ~MSG_WAITFORONE;
    for (; done < count; done++) {
        struct msghdr *m = &vec[done].msg_hdr;
        union inet_sa from;
        int out_flags = 0;
        ssize_t n = dgram_recv(fd, s.six, m->msg_iov, m->msg_iovlen, each, &from,
                               &out_flags);
        if (n < 0)
            return done > 0 ? (int)done : -1;
        if (m->msg_name != NULL)
            fill_address(&from, s.six, (struct sockaddr *)m->msg_name, &m->msg_namelen);
        else
            m->msg_namelen = 0;
        m->msg_controllen = 0;
        m->msg_flags = out_flags;
        vec[done].msg_len = (unsigned int)n;
        if (flags & MSG_WAITFORONE)
            each |= MSG_DONTWAIT;
    }
    return (int)done;
}

/* The _FORTIFY_SOURCE entry points: glibc's own call its internal read/recv, which we
 * would not see.  The size check stays glibc's. */
EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    need_real();
    if (n <= buflen && maybe_dgram(fd))
        return read(fd, buf, n);
    return real___read_chk(fd, buf, n, buflen);
}

EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    need_real();
    if (n <= buflen && maybe_dgram(fd))
        return recv(fd, buf, n, flags);
    return real___recv_chk(fd, buf, n, buflen, flags);
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                              __SOCKADDR_ARG addr, socklen_t *len)
{
    need_real();
    if (n <= buflen && maybe_dgram(fd))
        return recvfrom(fd, buf, n, flags, addr, len);
    return real___recvfrom_chk(fd, buf, n, buflen, flags, SA_OUT(addr), len);
}

/* ---------------------------------------------------------------------------------- */
/* Name resolution (NET_DNS_RESOLVE: A; NET_DNS_RESOLVE_ALL: A and/or AAAA)            */

/* The stack's own address (NET_GET_INFO's "ip"), network order; 0 if unknown.  Asked once
 * per channel: it is what "this machine" means to a routed program. */
static uint32_t stack_address(void)
{
    static uint32_t cached;
    static unsigned cached_gen;
    unsigned gen = chan_generation();
    uint32_t known = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (known != 0 && __atomic_load_n(&cached_gen, __ATOMIC_ACQUIRE) == gen)
        return known;
    const uint32_t cap = 256 * 1024; /* the report with every counter */
    unsigned char *json = malloc(cap + 1);
    if (json == NULL)
        return 0;
    struct reply w;
    unsigned asked_gen;
    uint32_t found = 0;
    if (ipc_call_into(C_GET_INFO, NULL, 0, &w, &asked_gen, 0, json, cap) == 0 && !w.status) {
        json[w.len] = '\0';
        /* One top-level key of a json.dumps(sort_keys=True) object: "ip": "A.B.C.D". */
        const char *at = strstr((const char *)json, "\"ip\": \"");
        struct in_addr ip;
        char text[16];
        if (at != NULL) {
            at += 7;
            size_t n = strcspn(at, "\"");
            if (n < sizeof text) {
                memcpy(text, at, n);
                text[n] = '\0';
                if (inet_pton(AF_INET, text, &ip) == 1)
                    found = ip.s_addr;
            }
        }
    }
    free(json);
    if (found != 0) {
        __atomic_store_n(&cached_gen, asked_gen, __ATOMIC_RELEASE);
        __atomic_store_n(&cached, found, __ATOMIC_RELEASE);
    }
    return found;
}

/* A name DNS can carry (ASCII, 1-253 characters): its length, or 0. */
static size_t dns_name_length(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] >= 0x80 || name[i] <= ' ')
            return 0; /* DNS carries ASCII; IDN is the program's (curl's) job */
    return n;
}

/*
 * "This machine" is not a DNS question (RFC 6761 6.3 for localhost; the host's own name is
 * /etc/hosts' business, and libraries look it up at start: libldap does for curl -V).  The
 * stack has no loopback interface (127.0.0.1 and ::1 leave by the link and time out), so
 * both mean the stack's own address, where a routed program's listeners are.
 */
static int is_self_name(const char *name, size_t n)
{
    if (strcasecmp(name, "localhost") == 0 || strcasecmp(name, "localhost.") == 0 ||
        (n > 10 && strcasecmp(name + n - 10, ".localhost") == 0))
        return 1;
    char self[256];
    if (gethostname(self, sizeof self) != 0)
        return 0;
    self[sizeof self - 1] = '\0';
    size_t m = strlen(self);
    return m > 0 && (strcasecmp(name, self) == 0 ||
                     (n == m + 1 && name[m] == '.' && strncasecmp(name, self, m) == 0));
}

/* netd's status of a lookup as an EAI_* code. */
static int eai_for(int status)
{
    switch (status) {
    case ENOENT:  /* NXDOMAIN */
    case ENODATA: /* no record of the type(s) asked for */
    case EINVAL:  /* not a name DNS can carry */
        return EAI_NONAME;
    case ETIMEDOUT:
    case EIO: /* server failure or refusal: may pass */
        return EAI_AGAIN;
    default:
        return EAI_FAIL;
    }
}

/* Up to MAX_ADDRESSES IPv4 addresses of `name` (network order) into out; returns the
 * count, or a negative EAI_* code (errno set for EAI_SYSTEM). */
static int resolve(const char *name, uint32_t *out)
{
    size_t n = dns_name_length(name);
    if (n == 0)
        return EAI_NONAME;
    struct in_addr literal;
    if (inet_aton(name, &literal)) {
        out[0] = literal.s_addr;
        return 1;
    }
    if (is_self_name(name, n)) {
        out[0] = stack_address();
        return out[0] != 0 ? 1 : EAI_NONAME;
    }
    unsigned char body[4 + 1 + MAX_NAME];
    put32(body, DNS_TIMEOUT_MS);
    body[4] = (unsigned char)n;
    memcpy(body + 5, name, n);
    struct reply w;
    int rc = ipc_call(C_DNS_RESOLVE, body, (uint32_t)(5 + n), &w, NULL);
    if (rc < 0) {
        errno = -rc;
        return EAI_SYSTEM;
    }
    DEBUG("resolve %s -> status %d", name, w.status);
    if (w.status)
        return eai_for(w.status);
    if (w.len < 1)
        return EAI_FAIL;
    int count = w.buf[0];
    if (count > MAX_ADDRESSES || w.len < 1 + 4u * (unsigned)count)
        return EAI_FAIL;
    if (count == 0)
        return EAI_NONAME;
    for (int i = 0; i < count; i++)
        memcpy(&out[i], w.buf + 1 + 4 * i, 4);
    return count;
}

/* One address of a lookup: AF_INET (4 bytes of addr used) or AF_INET6 (16). */
struct found {
    int family;
    unsigned char addr[16];
    uint32_t scope; /* an IPv6 literal's numeric %zone, else 0 */
};

/*
 * Up to MAX_ADDRESSES addresses of `name` of the families asked (WANT_A, WANT_AAAA), in the
 * order to try them (netd's: IPv6 first when the stack can send it), by
 * NET_DNS_RESOLVE_ALL.  The stack's own name is its IPv4 address, or that address mapped
 * (::ffff:a.b.c.d, which an AF_INET6 socket reaches) when only AAAA is asked.  Returns the
 * count, or a negative EAI_* code (errno set for EAI_SYSTEM).
 */
static int resolve_all(const char *name, int families, struct found *out)
{
    size_t n = dns_name_length(name);
    if (n == 0)
        return EAI_NONAME;
    if (is_self_name(name, n)) {
        uint32_t self = stack_address();
        if (self == 0)
            return EAI_NONAME;
        memset(&out[0], 0, sizeof out[0]);
        if (families & WANT_A) {
            out[0].family = AF_INET;
            memcpy(out[0].addr, &self, 4);
        } else {
            struct in6_addr mapped;
            map_v4(&mapped, self);
            out[0].family = AF_INET6;
            memcpy(out[0].addr, &mapped, 16);
        }
        return 1;
    }
    unsigned char body[4 + 1 + 1 + MAX_NAME];
    put32(body, DNS_TIMEOUT_MS);
    body[4] = (unsigned char)families;
    body[5] = (unsigned char)n;
    memcpy(body + 6, name, n);
    struct reply w;
    int rc = ipc_call(C_DNS_RESOLVE_ALL, body, (uint32_t)(6 + n), &w, NULL);
    if (rc < 0) {
        errno = -rc;
        return EAI_SYSTEM;
    }
    DEBUG("resolve %s (families %d) -> status %d", name, families, w.status);
    if (w.status)
        return eai_for(w.status);
    if (w.len < 1)
        return EAI_FAIL;
    int count = w.buf[0];
    if (count > MAX_ADDRESSES)
        return EAI_FAIL;
    uint32_t at = 1;
    for (int i = 0; i < count; i++) {
        if (at >= w.len)
            return EAI_FAIL;
        unsigned tag = w.buf[at++];
        uint32_t size = tag == TAG_IPV4 ? 4 : tag == TAG_IPV6 ? 16 : 0;
        if (size == 0 || w.len - at < size)
            return EAI_FAIL; /* a malformed reply */
        memset(&out[i], 0, sizeof out[i]);
        out[i].family = tag == TAG_IPV4 ? AF_INET : AF_INET6;
        memcpy(out[i].addr, w.buf + at, size);
        at += size;
    }
    if (at != w.len)
        return EAI_FAIL;
    if (count == 0)
        return EAI_NONAME;
    return count;
}

/* Our getaddrinfo results, so freeaddrinfo knows them from libc's (a program may hand
 * either to it, and any node of a list, per POSIX). */
struct our_ai {
    struct addrinfo ai;
    union inet_sa sa;
};

static pthread_mutex_t ai_lock = PTHREAD_MUTEX_INITIALIZER;
static struct addrinfo **ai_live;
static size_t ai_count, ai_cap;

static int ai_register(struct addrinfo *ai)
{
    pthread_mutex_lock(&ai_lock);
    if (ai_count == ai_cap) {
        size_t cap = ai_cap ? ai_cap * 2 : 64;
        struct addrinfo **bigger = realloc(ai_live, cap * sizeof *bigger);
        if (bigger == NULL) {
            pthread_mutex_unlock(&ai_lock);
            return -1;
        }
        ai_live = bigger;
        ai_cap = cap;
    }
    ai_live[ai_count++] = ai;
    pthread_mutex_unlock(&ai_lock);
    return 0;
}

static int ai_is_ours(const struct addrinfo *ai)
{
    int found = 0;
    pthread_mutex_lock(&ai_lock);
    for (size_t i = 0; i < ai_count && !found; i++)
        found = ai_live[i] == ai;
    pthread_mutex_unlock(&ai_lock);
    return found;
}

/* Remove ai from the registry; 1 if it was ours. */
static int ai_unregister(struct addrinfo *ai)
{
    int found = 0;
    pthread_mutex_lock(&ai_lock);
    for (size_t i = ai_count; i-- > 0;) {
        if (ai_live[i] == ai) {
            ai_live[i] = ai_live[--ai_count];
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&ai_lock);
    return found;
}

static void free_ours(struct addrinfo *ai)
{
    while (ai != NULL) {
        struct addrinfo *next = ai->ai_next;
        ai_unregister(ai);
        free(ai->ai_canonname);
        free(ai);
        ai = next;
    }
}

EXPORT void freeaddrinfo(struct addrinfo *ai)
{
    need_real();
    if (ai == NULL)
        return;
    if (ai_is_ours(ai)) {
        free_ours(ai);
        return;
    }
    real_freeaddrinfo(ai);
}

static int parse_port(const char *service, int socktype, int flags, int *port)
{
    if (service == NULL || service[0] == '\0') {
        *port = 0;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long v = strtoul(service, &end, 10);
    if (*end == '\0' && errno == 0 && isdigit((unsigned char)service[0])) {
        if (v > 0xFFFF)
            return EAI_SERVICE;
        *port = (int)v;
        return 0;
    }
    if (flags & AI_NUMERICSERV)
        return EAI_NONAME;
    /* /etc/services: a local file, no network. */
    struct servent result, *found = NULL;
    char buf[1024];
    const char *proto = socktype == SOCK_DGRAM ? "udp" : "tcp";
    if (getservbyname_r(service, proto, &result, buf, sizeof buf, &found) != 0 ||
        found == NULL)
        return EAI_SERVICE;
    *port = ntohs((uint16_t)found->s_port);
    return 0;
}

/* An IPv6 literal, with an optional %zone: a number is kept as the scope id, a name (an
 * interface of the host, not of netd's one link) is dropped. */
static int ip6_literal(const char *node, struct in6_addr *out, uint32_t *scope)
{
    char bare[INET6_ADDRSTRLEN];
    const char *zone = strchr(node, '%');
    size_t n = zone != NULL ? (size_t)(zone - node) : strlen(node);
    if (n >= sizeof bare)
        return 0;
    memcpy(bare, node, n);
    bare[n] = '\0';
    if (inet_pton(AF_INET6, bare, out) != 1)
        return 0;
    *scope = 0;
    if (zone != NULL && isdigit((unsigned char)zone[1])) {
        char *end;
        unsigned long v = strtoul(zone + 1, &end, 10);
        if (*end == '\0' && v <= 0xFFFFFFFFul)
            *scope = (uint32_t)v;
    }
    return 1;
}

EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    need_real();
    int family = hints ? hints->ai_family : AF_UNSPEC;
    int socktype = hints ? hints->ai_socktype : 0;
    int protocol = hints ? hints->ai_protocol : 0;
    int flags = hints ? hints->ai_flags : (AI_V4MAPPED | AI_ADDRCONFIG);
    const int known = AI_PASSIVE | AI_CANONNAME | AI_NUMERICHOST | AI_NUMERICSERV |
                      AI_V4MAPPED | AI_ALL | AI_ADDRCONFIG | AI_IDN | AI_CANONIDN;
    if (res == NULL)
        return EAI_FAIL;
    *res = NULL;
    if (flags & ~known)
        return EAI_BADFLAGS;
    if ((flags & AI_CANONNAME) && node == NULL)
        return EAI_BADFLAGS;
    if (node == NULL && service == NULL)
        return EAI_NONAME;
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return EAI_FAMILY;
    if (socktype != 0 && socktype != SOCK_STREAM && socktype != SOCK_DGRAM &&
        socktype != SOCK_RAW)
        return EAI_SOCKTYPE;

    struct found addresses[MAX_ADDRESSES];
    memset(addresses, 0, sizeof addresses);
    int count = 0;
    if (node == NULL) {
        /* glibc's order: the wildcards IPv4 first, the loopbacks IPv6 first. */
        int passive = (flags & AI_PASSIVE) != 0;
        uint32_t v4 = htonl(passive ? INADDR_ANY : INADDR_LOOPBACK);
        struct found six = {.family = AF_INET6};
        if (!passive)
            memcpy(six.addr, &in6addr_loopback, 16);
        struct found four = {.family = AF_INET};
        memcpy(four.addr, &v4, 4);
        if (family == AF_INET6 || (family == AF_UNSPEC && !passive))
            addresses[count++] = six;
        if (family != AF_INET6)
            addresses[count++] = four;
        if (family == AF_UNSPEC && passive)
            addresses[count++] = six;
    } else {
        struct in_addr literal;
        struct in6_addr literal6;
        uint32_t scope = 0;
        if (inet_aton(node, &literal)) {
            if (family == AF_INET6 && !(flags & AI_V4MAPPED))
                return EAI_ADDRFAMILY; /* glibc's, for an IPv4 literal */
            addresses[0].family = AF_INET;
            memcpy(addresses[0].addr, &literal.s_addr, 4);
            count = 1; /* mapped below for AF_INET6 */
        } else if (ip6_literal(node, &literal6, &scope)) {
            if (family == AF_INET)
                return EAI_ADDRFAMILY; /* an IPv6 literal has no IPv4 address */
            addresses[0].family = AF_INET6;
            memcpy(addresses[0].addr, &literal6, 16);
            count = 1;
        } else if (flags & AI_NUMERICHOST) {
            return EAI_NONAME;
        } else if (family == AF_INET) {
            uint32_t v4[MAX_ADDRESSES];
            count = resolve(node, v4);
            if (count < 0)
                return count; /* an EAI_ code (glibc's are negative) */
            for (int i = 0; i < count; i++) {
                addresses[i].family = AF_INET;
                memcpy(addresses[i].addr, &v4[i], 4);
            }
        } else {
            /* AF_INET6 with AI_V4MAPPED asks for A too: IPv4 addresses come mapped when
             * there is no IPv6 one (or always, with AI_ALL). */
            int families = (family == AF_UNSPEC || (flags & AI_V4MAPPED))
                               ? WANT_A | WANT_AAAA
                               : WANT_AAAA;
            count = resolve_all(node, families, addresses);
            if (count < 0)
                return count;
        }
        if (count == 1 && addresses[0].family == AF_INET6)
            addresses[0].scope = scope;
    }
    if (family == AF_INET6) {
        /* Only AF_INET6 results: IPv4 ones as ::ffff:a.b.c.d if AI_V4MAPPED allows. */
        int has6 = 0;
        for (int i = 0; i < count; i++)
            has6 |= addresses[i].family == AF_INET6;
        int keep4 = (flags & AI_V4MAPPED) && (!has6 || (flags & AI_ALL));
        int kept = 0;
        for (int i = 0; i < count; i++) {
            struct found f = addresses[i];
            if (f.family == AF_INET) {
                if (!keep4)
                    continue;
                uint32_t v4;
                memcpy(&v4, f.addr, 4);
                struct in6_addr mapped;
                map_v4(&mapped, v4);
                f.family = AF_INET6;
                memcpy(f.addr, &mapped, 16);
            }
            addresses[kept++] = f;
        }
        count = kept;
        if (count == 0)
            return EAI_NONAME;
    }

    /* The socket types asked for: stream and datagram when none is given (glibc adds
     * raw too, which nobody connects with), raw only when asked. */
    struct kind {
        int type, proto;
    } kinds[2];
    int nkinds = 0;
    if (socktype == 0) {
        if (protocol == 0 || protocol == IPPROTO_TCP)
            kinds[nkinds++] = (struct kind){SOCK_STREAM, IPPROTO_TCP};
        if (protocol == 0 || protocol == IPPROTO_UDP)
            kinds[nkinds++] = (struct kind){SOCK_DGRAM, IPPROTO_UDP};
        if (nkinds == 0)
            return EAI_SOCKTYPE;
    } else if (socktype == SOCK_STREAM) {
        kinds[nkinds++] = (struct kind){SOCK_STREAM, protocol ? protocol : IPPROTO_TCP};
    } else if (socktype == SOCK_DGRAM) {
        kinds[nkinds++] = (struct kind){SOCK_DGRAM, protocol ? protocol : IPPROTO_UDP};
    } else {
        kinds[nkinds++] = (struct kind){SOCK_RAW, protocol};
    }

    int ports[2];
    for (int k = 0; k < nkinds; k++) {
        int rc = parse_port(service, kinds[k].type, flags, &ports[k]);
        if (rc)
            return rc;
    }

    struct addrinfo *head = NULL, **tail = &head;
    for (int i = 0; i < count; i++) {
        for (int k = 0; k < nkinds; k++) {
            struct our_ai *node_ai = calloc(1, sizeof *node_ai);
            if (node_ai == NULL || ai_register(&node_ai->ai) < 0) {
                free(node_ai);
                free_ours(head);
                return EAI_MEMORY;
            }
            const struct found *f = &addresses[i];
            if (f->family == AF_INET6) {
                struct sockaddr_in6 *sin6 = &node_ai->sa.v6;
                sin6->sin6_family = AF_INET6;
                sin6->sin6_port = htons((uint16_t)ports[k]);
                memcpy(&sin6->sin6_addr, f->addr, 16);
                /* As netd reports addresses: scope 1 for link-local (its one link). */
                sin6->sin6_scope_id = f->scope ? f->scope
                                               : is_link_local(&sin6->sin6_addr) ? 1 : 0;
            } else {
                node_ai->sa.v4.sin_family = AF_INET;
                node_ai->sa.v4.sin_port = htons((uint16_t)ports[k]);
                memcpy(&node_ai->sa.v4.sin_addr.s_addr, f->addr, 4);
            }
            node_ai->ai.ai_family = f->family;
            node_ai->ai.ai_socktype = kinds[k].type;
            node_ai->ai.ai_protocol = kinds[k].proto;
            node_ai->ai.ai_addrlen = sa_size(f->family == AF_INET6);
            node_ai->ai.ai_addr = &node_ai->sa.sa;
            *tail = &node_ai->ai;
            tail = &node_ai->ai.ai_next;
        }
    }
    if (head != NULL && (flags & AI_CANONNAME)) {
        head->ai_canonname = strdup(node); /* netd reports no CNAME chain */
        if (head->ai_canonname == NULL) {
            free_ours(head);
            return EAI_MEMORY;
        }
    }
    DEBUG("getaddrinfo %s -> %d address(es)", node ? node : "(null)", count);
    *res = head;
    return 0;
}

EXPORT int getnameinfo(const struct sockaddr *addr, socklen_t addrlen, char *host,
                       socklen_t hostlen, char *serv, socklen_t servlen, int flags)
{
    need_real();
    if (addr == NULL)
        return EAI_FAMILY;
    if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
        return real_getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags);
    int six = addr->sa_family == AF_INET6;
    if (addrlen < sa_size(six))
        return EAI_FAMILY;
    union inet_sa sa;
    memcpy(&sa, addr, sa_size(six));
    uint16_t port = six ? sa.v6.sin6_port : sa.v4.sin_port;
    if (host != NULL && hostlen > 0) {
        if (flags & NI_NAMEREQD)
            return EAI_NONAME; /* no PTR lookups through netd */
        /* Numeric only: a reverse lookup would go out by the host's resolver.  A scope
         * is written as its number: the host's interface names are not netd's link. */
        char text[INET6_ADDRSTRLEN + 12];
        if (six) {
            inet_ntop(AF_INET6, &sa.v6.sin6_addr, text, INET6_ADDRSTRLEN);
            if (sa.v6.sin6_scope_id != 0 && is_link_local(&sa.v6.sin6_addr))
                snprintf(text + strlen(text), 12, "%%%u", (unsigned)sa.v6.sin6_scope_id);
        } else {
            inet_ntop(AF_INET, &sa.v4.sin_addr, text, INET6_ADDRSTRLEN);
        }
        if (strlen(text) >= hostlen)
            return EAI_OVERFLOW;
        strcpy(host, text);
    }
    if (serv != NULL && servlen > 0) {
        struct servent result, *found = NULL;
        char buf[1024];
        if (!(flags & NI_NUMERICSERV) &&
            getservbyport_r(port, (flags & NI_DGRAM) ? "udp" : "tcp", &result, buf,
                            sizeof buf, &found) == 0 &&
            found != NULL) {
            if (strlen(found->s_name) >= servlen)
                return EAI_OVERFLOW;
            strcpy(serv, found->s_name);
        } else if (snprintf(serv, servlen, "%u", ntohs(port)) >= (int)servlen) {
            return EAI_OVERFLOW;
        }
    }
    return 0;
}

/* gethostbyname and friends: laid out in the caller's buffer (the _r forms) or ours.
 * `addresses` holds count addresses of `size` bytes (4: AF_INET, 16: AF_INET6). */
static int fill_hostent(const char *name, int af, const unsigned char *addresses, int count,
                        struct hostent *ret, char *buf, size_t buflen)
{
    size_t size = af == AF_INET6 ? 16 : 4;
    size_t name_len = strlen(name) + 1;
    size_t align = sizeof(char *);
    size_t need = (size_t)(count + 1) * sizeof(char *) + sizeof(char *) +
                  (size_t)count * size + name_len + align;
    if (need > buflen)
        return ERANGE;
    char *p = buf + ((align - ((uintptr_t)buf % align)) % align);
    char **list = (char **)p;
    char **aliases = list + count + 1;
    char *data = (char *)(aliases + 1);
    for (int i = 0; i < count; i++) {
        memcpy(data + size * (size_t)i, addresses + size * (size_t)i, size);
        list[i] = data + size * (size_t)i;
    }
    list[count] = NULL;
    aliases[0] = NULL;
    char *copy = data + size * (size_t)count;
    memcpy(copy, name, name_len);
    ret->h_name = copy;
    ret->h_aliases = aliases;
    ret->h_addrtype = af;
    ret->h_length = (int)size;
    ret->h_addr_list = list;
    return 0;
}

static int herrno_for(int eai)
{
    switch (eai) {
    case EAI_NONAME:
        return HOST_NOT_FOUND;
    case EAI_AGAIN:
        return TRY_AGAIN;
    case EAI_SYSTEM:
        return NETDB_INTERNAL;
    default:
        return NO_RECOVERY;
    }
}

static int hostbyname_r(const char *name, int af, struct hostent *ret, char *buf,
                        size_t buflen, struct hostent **result, int *h_errnop)
{
    *result = NULL;
    if (af != AF_INET && af != AF_INET6) {
        *h_errnop = NETDB_INTERNAL;
        return EAFNOSUPPORT;
    }
    unsigned char packed[MAX_ADDRESSES * 16];
    int count;
    if (af == AF_INET) {
        uint32_t addresses[MAX_ADDRESSES];
        count = resolve(name, addresses);
        if (count > 0)
            memcpy(packed, addresses, (size_t)count * 4);
    } else {
        /* AAAA records (NET_DNS_RESOLVE_ALL); an IPv6 literal is its own answer. */
        struct found found[MAX_ADDRESSES];
        struct in6_addr literal;
        uint32_t scope;
        if (ip6_literal(name, &literal, &scope)) {
            memcpy(packed, &literal, 16);
            count = 1;
        } else {
            count = resolve_all(name, WANT_AAAA, found);
            for (int i = 0; i < count; i++)
                memcpy(packed + 16 * i, found[i].addr, 16);
        }
    }
    if (count < 0) {
        *h_errnop = herrno_for(count);
        return count == EAI_SYSTEM ? errno : 0;
    }
    int rc = fill_hostent(name, af, packed, count, ret, buf, buflen);
    if (rc) {
        *h_errnop = NETDB_INTERNAL;
        return rc;
    }
    *result = ret;
    *h_errnop = 0;
    return 0;
}

EXPORT int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf,
                            size_t buflen, struct hostent **result, int *h_errnop)
{
    need_real();
    return hostbyname_r(name, af, ret, buf, buflen, result, h_errnop);
}

EXPORT int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                           struct hostent **result, int *h_errnop)
{
    need_real();
    return hostbyname_r(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

static struct hostent static_host;
static char static_buf[2048];

EXPORT struct hostent *gethostbyname2(const char *name, int af)
{
    need_real();
    struct hostent *result;
    int herr = 0;
    hostbyname_r(name, af, &static_host, static_buf, sizeof static_buf, &result, &herr);
    h_errno = herr;
    return result;
}

EXPORT struct hostent *gethostbyname(const char *name)
{
    return gethostbyname2(name, AF_INET);
}

/* Reverse lookups cannot go through netd (no PTR query) and must not leave by the
 * host's resolver: "not found", as for an address without a name. */
EXPORT struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
    (void)addr, (void)len, (void)type;
    h_errno = HOST_NOT_FOUND;
    return NULL;
}

EXPORT int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret,
                           char *buf, size_t buflen, struct hostent **result, int *h_errnop)
{
    (void)addr, (void)len, (void)type, (void)ret, (void)buf, (void)buflen;
    *result = NULL;
    *h_errnop = HOST_NOT_FOUND;
    return 0;
}

/* getaddrinfo_a: answered at once (our lookups are netd round trips), then notified as
 * asked.  gai_error() reads the request's result field, which we set. */
struct gai_notify {
    struct sigevent ev;
};

static void *gai_thread(void *arg)
{
    struct gai_notify *n = arg;
    n->ev.sigev_notify_function(n->ev.sigev_value);
    free(n);
    return NULL;
}

EXPORT int getaddrinfo_a(int mode, struct gaicb *list[], int count, struct sigevent *sev)
{
    need_real();
    if (mode != GAI_WAIT && mode != GAI_NOWAIT)
        return EAI_SYSTEM;
    for (int i = 0; i < count; i++) {
        if (list[i] == NULL)
            continue;
        list[i]->__return = getaddrinfo(list[i]->ar_name, list[i]->ar_service,
                                        list[i]->ar_request, &list[i]->ar_result);
    }
    if (mode == GAI_NOWAIT && sev != NULL) {
        if (sev->sigev_notify == SIGEV_SIGNAL) {
            sigqueue(getpid(), sev->sigev_signo, sev->sigev_value);
        } else if (sev->sigev_notify == SIGEV_THREAD && sev->sigev_notify_function) {
            struct gai_notify *n = malloc(sizeof *n);
            pthread_t t;
            pthread_attr_t attr;
            if (n != NULL) {
                n->ev = *sev;
                pthread_attr_init(&attr);
                pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                if (pthread_create(&t, &attr, gai_thread, n) != 0)
                    free(n);
                pthread_attr_destroy(&attr);
            }
        }
    }
    return 0;
}

/* Raw DNS (MX, SRV, SSHFP...) cannot be asked through netd, whose resolver answers A and
 * AAAA records only; without these the libc resolver would send the query from the host. */
#define NO_RAW_DNS                                                                     \
    do {                                                                               \
        h_errno = NO_RECOVERY;                                                         \
        errno = EAFNOSUPPORT;                                                          \
        return -1;                                                                     \
    } while (0)

EXPORT int res_query(const char *d, int c, int t, unsigned char *a, int l)
{
    (void)d, (void)c, (void)t, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_search(const char *d, int c, int t, unsigned char *a, int l)
{
    (void)d, (void)c, (void)t, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_querydomain(const char *n, const char *d, int c, int t, unsigned char *a,
                           int l)
{
    (void)n, (void)d, (void)c, (void)t, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_send(const unsigned char *m, int ml, unsigned char *a, int l)
{
    (void)m, (void)ml, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_nquery(res_state s, const char *d, int c, int t, unsigned char *a, int l)
{
    (void)s, (void)d, (void)c, (void)t, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_nsearch(res_state s, const char *d, int c, int t, unsigned char *a, int l)
{
    (void)s, (void)d, (void)c, (void)t, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_nquerydomain(res_state s, const char *n, const char *d, int c, int t,
                            unsigned char *a, int l)
{
    (void)s, (void)n, (void)d, (void)c, (void)t, (void)a, (void)l;
    NO_RAW_DNS;
}

EXPORT int res_nsend(res_state s, const unsigned char *m, int ml, unsigned char *a, int l)
{
    (void)s, (void)m, (void)ml, (void)a, (void)l;
    NO_RAW_DNS;
}

/* Programs linked before glibc 2.34 call these names (from libresolv). */
EXPORT int __res_query(const char *d, int c, int t, unsigned char *a, int l);
EXPORT int __res_query(const char *d, int c, int t, unsigned char *a, int l)
{
    return res_query(d, c, t, a, l);
}

EXPORT int __res_search(const char *d, int c, int t, unsigned char *a, int l);
EXPORT int __res_search(const char *d, int c, int t, unsigned char *a, int l)
{
    return res_search(d, c, t, a, l);
}

EXPORT int __res_querydomain(const char *n, const char *d, int c, int t, unsigned char *a,
                             int l);
EXPORT int __res_querydomain(const char *n, const char *d, int c, int t, unsigned char *a,
                             int l)
{
    return res_querydomain(n, d, c, t, a, l);
}

EXPORT int __res_send(const unsigned char *m, int ml, unsigned char *a, int l);
EXPORT int __res_send(const unsigned char *m, int ml, unsigned char *a, int l)
{
    return res_send(m, ml, a, l);
}

EXPORT int __res_nquery(res_state s, const char *d, int c, int t, unsigned char *a, int l);
EXPORT int __res_nquery(res_state s, const char *d, int c, int t, unsigned char *a, int l)
{
    return res_nquery(s, d, c, t, a, l);
}

EXPORT int __res_nsearch(res_state s, const char *d, int c, int t, unsigned char *a, int l);
EXPORT int __res_nsearch(res_state s, const char *d, int c, int t, unsigned char *a, int l)
{
    return res_nsearch(s, d, c, t, a, l);
}

EXPORT int __res_nsend(res_state s, const unsigned char *m, int ml, unsigned char *a, int l);
EXPORT int __res_nsend(res_state s, const unsigned char *m, int ml, unsigned char *a, int l)
{
    return res_nsend(s, m, ml, a, l);
}

/* ---------------------------------------------------------------------------------- */
/* fork                                                                                 */

static void before_fork(void)
{
    /* Hold every lock across fork so the child does not inherit one mid-change. */
    pthread_mutex_lock(&tab_lock);
    pthread_mutex_lock(&ai_lock);
    pthread_mutex_lock(&chan.lock);
}

static void after_fork_parent(void)
{
    pthread_mutex_unlock(&chan.lock);
    pthread_mutex_unlock(&ai_lock);
    pthread_mutex_unlock(&tab_lock);
}

static void after_fork_child(void)
{
    /* The parent's channel is the parent's: its readers and waiters are threads we do
     * not have.  Our socket entries stay, marked by the old generation: reads and writes
     * need no netd, and the first netd call on one adopts it into the child's channel
     * (ensure_own). */
    chan_forget_parent();
    pthread_cond_init(&chan.cond, NULL);
    pthread_mutex_unlock(&chan.lock);
    pthread_mutex_unlock(&ai_lock);
    pthread_mutex_unlock(&tab_lock);
}

__attribute__((constructor)) static void preload_init(void)
{
    need_real();
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}
