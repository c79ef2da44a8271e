/* exec: runs a --exec handler per batch (handler.h): /bin/sh -c CMD in a process group of its
 * own, the event on its stdin, its stdout captured when it reports item failures. Writing and
 * reading are interleaved with poll() so a handler that answers before it has read all its
 * input cannot deadlock us. The poll also watches a pidfd of the handler, so that its exit is
 * seen at once (without one, as on a kernel before 5.3, it is seen within POLL_MS: every
 * batch would take POLL_MS at least). */
#include "handler.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define POLL_MS 50

static void stop_group(pid_t pid, int *status)
{
    kill(-pid, SIGTERM);
    int64_t until = kyu_consumer_now_ms() + KYU_HANDLER_KILL_GRACE_MS;
    while (kyu_consumer_now_ms() < until) {
        if (waitpid(pid, status, WNOHANG) == pid) {
            kill(-pid, SIGKILL); /* what it left behind */
            return;
        }
        poll(NULL, 0, POLL_MS);
    }
    kill(-pid, SIGKILL);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

void kyu_exec_run(const char *cmd, const char *in, size_t in_len, bool capture,
                  const kyu_batch_t *batch, kyu_run_result_t *res)
{
    memset(res, 0, sizeof *res);
    int inp[2] = {-1, -1}, outp[2] = {-1, -1};
    if (pipe2(inp, O_CLOEXEC) != 0 || (capture && pipe2(outp, O_CLOEXEC) != 0)) {
        snprintf(res->why, sizeof res->why, "pipe: %s", strerror(errno));
        goto done;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t sa;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&sa);
    posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
    if (capture)
        posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGINT);
    posix_spawnattr_setsigmask(&sa, &none);
    posix_spawnattr_setsigdefault(&sa, &dflt);
    posix_spawnattr_setpgroup(&sa, 0);
    posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &sa, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&sa);
    if (rc != 0) {
        snprintf(res->why, sizeof res->why, "cannot run /bin/sh: %s", strerror(rc));
        goto done;
    }
    close(inp[0]);
    inp[0] = -1;
    if (capture) {
        close(outp[1]);
        outp[1] = -1;
    }
    fcntl(inp[1], F_SETFL, O_NONBLOCK);
#ifdef SYS_pidfd_open
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* readable once the handler exited */
#else
    int pidfd = -1;
#endif
    size_t written = 0, cap = 0;
    int status = 0;
    bool exited = false;
    if (in_len == 0) {
        close(inp[1]);
        inp[1] = -1;
    }
    for (;;) {
        struct pollfd p[3];
        int np = 0, wi = -1, ri = -1;
        if (inp[1] >= 0) {
            p[np] = (struct pollfd){inp[1], POLLOUT, 0};
            wi = np++;
        }
        if (capture && outp[0] >= 0) {
            p[np] = (struct pollfd){outp[0], POLLIN, 0};
            ri = np++;
        }
        if (!exited && waitpid(pid, &status, WNOHANG) == pid)
            exited = true;
        if (!exited && pidfd >= 0)
            p[np++] = (struct pollfd){pidfd, POLLIN, 0};
        if (exited && ri < 0)
            break;
        if (kyu_batch_cancelled(batch) || kyu_consumer_now_ms() >= batch->deadline_ms) {
            if (!exited)
                stop_group(pid, &status);
            res->timed_out = true;
            snprintf(res->why, sizeof res->why, "stopped at its timeout (SIGTERM, then SIGKILL)");
            break;
        }
        int n = poll(p, (nfds_t)np, POLL_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (wi >= 0 && (p[wi].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(inp[1], in + written, in_len - written);
            if (w > 0)
                written += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == in_len) {
                close(inp[1]); /* done, or the handler closed its stdin (EPIPE) */
                inp[1] = -1;
            }
        }
        if (ri >= 0 && (p[ri].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (cap - res->out_len < 65536 && !res->out_too_big) {
                size_t ncap = cap ? cap * 2 : 65536;
                char *more = realloc(res->out, ncap + 1);
                if (!more) {
                    res->out_too_big = true;
                } else {
                    res->out = more;
                    cap = ncap;
                }
            }
            char sink[4096];
            ssize_t r = res->out_too_big
                            ? read(outp[0], sink, sizeof sink)
                            : read(outp[0], res->out + res->out_len, cap - res->out_len);
            if (r > 0 && !res->out_too_big) {
                res->out_len += (size_t)r;
                if (res->out_len > KYU_HANDLER_OUTPUT_MAX)
                    res->out_too_big = true;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close(outp[0]);
                outp[0] = -1;
            }
        }
        if (exited && ri >= 0 && !(p[ri].revents & POLLIN))
            break; /* exited; a child it left may hold stdout open: what was written is read */
    }
    if (!res->timed_out) {
        if (!exited)
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        res->ran = true;
        res->status = exit_code(status);
        snprintf(res->why, sizeof res->why, "exit status %d", res->status);
    }
    if (pidfd >= 0)
        close(pidfd);
done:
    if (res->out)
        res->out[res->out_len] = '\0';
    for (int i = 0; i < 2; i++) {
        if (inp[i] >= 0)
            close(inp[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
}
