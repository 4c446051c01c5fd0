/* Sending fds in flight (SCM_RIGHTS) on a unix socket, for the targets that
 * leave them queued (rt_scm.c, rt_scm_gone.c, rt_scm_inet.c, rt_unix.c, rt_scm_epoll.c,
 * rt_scm_tcp.c).
 * Include after common.h. */
#ifndef CRYO_SCM_FDS_H
#define CRYO_SCM_FDS_H

#include <string.h>
#include <sys/socket.h>

/* Sends `len` bytes of `data` on `sock` with the `n` fds of `fds` (at most 4). */
static void send_fds(int sock, const char *data, size_t len, const int *fds, int n) {
  struct iovec iov = {(void *)data, len};
  union { struct cmsghdr h; char buf[CMSG_SPACE(4 * sizeof(int))]; } c;
  memset(&c, 0, sizeof c);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n < 0 || n > 4) die_err("send_fds: too many fds", EINVAL);
  if (n > 0) {
    msg.msg_control = c.buf;
    msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
  }
  if (sendmsg(sock, &msg, 0) != (ssize_t)len) die("sendmsg");
}

#endif
