/*
 * A pre-fork TCP server: the parent listens, N children accept (the classic Apache
 * shape).  Under the preload library each child adopts the inherited listener into its
 * own netd channel.  Each answers a connection with "PID <pid> " and the upper-cased
 * request.  Usage: prefork PORT CHILDREN; prints "child PID" per child, then "ready".
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void serve(int listener)
{
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    if (getsockname(listener, (struct sockaddr *)&me, &ml) != 0) /* a netd call: adopts */
        _exit(3);
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            _exit(4);
        char buf[256];
        size_t have = 0;
        ssize_t n;
        while (have < sizeof buf && (n = read(c, buf + have, sizeof buf - have)) > 0)
            have += (size_t)n;
        char out[300];
        int len = snprintf(out, sizeof out, "PID %d ", (int)getpid());
        for (size_t i = 0; i < have && len < (int)sizeof out; i++)
            out[len++] = (char)toupper((unsigned char)buf[i]);
        if (write(c, out, (size_t)len) != len)
            _exit(5);
        close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    if (s < 0 || bind(s, (struct sockaddr *)&at, sizeof at) != 0 || listen(s, 64) != 0) {
        perror("listen");
        return 1;
    }
    int children = atoi(argv[2]);
    pid_t pids[16];
    for (int i = 0; i < children && i < 16; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            serve(s);
        printf("child %d\n", (int)pids[i]);
    }
    printf("ready\n");
    fflush(stdout);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < children && i < 16; i++)
        kill(pids[i], SIGKILL);
    while (wait(NULL) > 0) {
    }
    return 0;
}
