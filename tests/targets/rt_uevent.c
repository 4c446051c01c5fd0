/* Round-trip target for kernel uevent netlink sockets (NETLINK_KOBJECT_UEVENT,
 * as udev-like daemons hold; CRIU's zdtm sk-netlink): one bound to an
 * automatic port id and subscribed to group 1 (kernel events), one bound to
 * a port id of its own, one never bound.
 *
 * After the restore the port ids, the group and the unbound state are the
 * same, and a message sent from the unbound socket to the second one's port
 * id arrives.
 *
 * usage: rt_uevent <trigger>
 * prints: ready pid=<pid>
 */
#define _GNU_SOURCE
#include "common.h"
#include <linux/netlink.h>
#include <sys/socket.h>

static unsigned portid(int fd) {
  struct sockaddr_nl a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) return ~0u;
  return a.nl_pid;
}

static unsigned groups(int fd) {
  unsigned g[4] = {0};
  socklen_t len = sizeof g;
  if (getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, g, &len) != 0) return ~0u;
  return g[0];
}

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_uevent <trigger>");
  int ev = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
  int own = socket(AF_NETLINK, SOCK_RAW, NETLINK_KOBJECT_UEVENT);
  int unbound = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT);
  if (ev < 0 || own < 0 || unbound < 0) die("socket");
  struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = 1};
  if (bind(ev, (struct sockaddr *)&a, sizeof a) != 0) die("bind ev");
  struct sockaddr_nl b = {.nl_family = AF_NETLINK, .nl_pid = 0x7e000000u + (unsigned)getpid()};
  if (bind(own, (struct sockaddr *)&b, sizeof b) != 0) die("bind own");
  unsigned pev = portid(ev), pown = portid(own);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  check("uevent-ports", portid(ev) == pev && portid(own) == pown && pown == b.nl_pid &&
                            portid(unbound) == 0,
        "ports %u %u %u, were %u %u 0", portid(ev), portid(own), portid(unbound), pev, pown);
  check("uevent-group", groups(ev) == 1 && groups(own) == 0, "groups %#x %#x", groups(ev),
        groups(own));
  char msg[] = "hello";
  ssize_t sent = sendto(unbound, msg, sizeof msg, 0, (struct sockaddr *)&b, sizeof b);
  char buf[32] = {0};
  ssize_t got = recv(own, buf, sizeof buf, MSG_DONTWAIT);
  check("uevent-unicast", sent == sizeof msg && got == sizeof msg && !strcmp(buf, msg),
        "sent %zd got %zd: %s", sent, got, strerror(errno));
  return verdict();
}
