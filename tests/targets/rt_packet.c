/* Round-trip target for AF_PACKET sockets (dhclient, tcpdump, arping,
 * lldpd), all on the loopback interface with local experimental ethertypes:
 *
 * - raw:    SOCK_RAW, ethertype 0x88b5, bound to lo, PACKET_AUXDATA,
 *           PACKET_ORIGDEV, PACKET_VERSION v2, PACKET_RESERVE, PACKET_TIMESTAMP,
 *           PACKET_QDISC_BYPASS, SO_RCVBUF, SO_PRIORITY; a promiscuous and a
 *           multicast membership on lo;
 * - dgram:  SOCK_DGRAM, ethertype 0x88b5, bound to lo, a classic BPF filter
 *           that passes only payloads starting with 'A', PACKET_IGNORE_OUTGOING;
 * - fan1, fan2 and a child's fan3: SOCK_RAW, ethertype 0x88b6, bound to lo,
 *           one fanout group (hash mode) across two processes: a packet reaches
 *           one of them only;
 * - idle:   SOCK_RAW, protocol 0, never bound (receives nothing), PACKET_VNET_HDR.
 *
 * After the restore each has the same sockaddr_ll (getsockname), options and
 * fanout value; lo is promiscuous and has the multicast address (the
 * memberships: /sys/class/net/lo/flags, /proc/net/dev_mcast); packets sent
 * on lo after the restore reach raw and dgram (the 'B' one filtered out of
 * dgram) and one of fan1/fan2/fan3.
 *
 * Modes: "ok" (the round trip), "queued" (a packet left unread: refused),
 * "ring" (raw gets a PACKET_RX_RING of two frames a block, mapped, and one
 * frame lands in it: the kernel's next frame is inside a block, refused), "spkt" (a SOCK_PACKET socket:
 * refused). In the refused modes the target checks, when triggered, that its
 * socket still works.
 *
 * usage: rt_packet <trigger> <work> <mode>
 * prints: ready pid=<pid>
 */
#define _GNU_SOURCE
#include "common.h"
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define ETH_A 0x88b5
#define ETH_F 0x88b6

static const unsigned char MCAST[6] = {0x01, 0x00, 0x5e, 0x7f, 0x12, 0x34};

static int lo;

static int packet_socket(int type, int proto, int bind_lo) {
  int fd = socket(AF_PACKET, type, htons(proto));
  if (fd < 0) die("socket(AF_PACKET)");
  if (bind_lo) {
    struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(proto),
                            .sll_ifindex = lo};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
  }
  return fd;
}

static void set_int(int fd, int level, int name, int v, const char *what) {
  if (setsockopt(fd, level, name, &v, sizeof v) != 0) die(what);
}

static int get_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len) != 0) return -2;
  return v;
}

/* "proto/ifindex" of getsockname's sockaddr_ll. */
static void name_of(int fd, char *out, size_t n) {
  struct sockaddr_ll a;
  socklen_t len = sizeof a;
  memset(&a, 0, sizeof a);
  if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    snprintf(out, n, "error %s", strerror(errno));
    return;
  }
  snprintf(out, n, "%d/%04x/%d", a.sll_family, ntohs(a.sll_protocol), a.sll_ifindex);
}

/* Sends one frame on lo with ethertype `proto` and payload `text`. */
static void send_frame(int tx, int proto, const char *text) {
  unsigned char frame[64] = {0};
  memset(frame, 0xff, 6);
  frame[6] = 0x02;
  frame[12] = proto >> 8;
  frame[13] = proto & 0xff;
  snprintf((char *)frame + 14, sizeof frame - 14, "%s", text);
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(proto),
                           .sll_ifindex = lo, .sll_halen = 6};
  memset(to.sll_addr, 0xff, 6);
  if (sendto(tx, frame, sizeof frame, 0, (struct sockaddr *)&to, sizeof to) != sizeof frame)
    die("sendto");
}

/* Receives every frame waiting on fd (waiting a little for the first); the count. */
static int drain(int fd, char *first, size_t n, int payload_at) {
  int count = 0;
  unsigned char buf[256];
  for (int tries = 0; tries < 50; tries++) {
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0) {
      if (count) break;
      usleep(2000);
      continue;
    }
    if (count == 0 && first && got > payload_at)
      snprintf(first, n, "%.*s", (int)(got - payload_at), (char *)buf + payload_at);
    count++;
    tries = 45; /* once one came, a few more tries only */
  }
  return count;
}

static int has_mcast(void) {
  FILE *f = fopen("/proc/net/dev_mcast", "r");
  if (!f) return 0;
  char line[256], want[16];
  snprintf(want, sizeof want, "%02x%02x%02x%02x%02x%02x", MCAST[0], MCAST[1], MCAST[2], MCAST[3],
           MCAST[4], MCAST[5]);
  int found = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, " lo ") && strstr(line, want)) found = 1;
  fclose(f);
  return found;
}

static int lo_promisc(void) {
  FILE *f = fopen("/sys/class/net/lo/flags", "r");
  unsigned flags = 0;
  if (!f || fscanf(f, "%x", &flags) != 1) flags = 0;
  if (f) fclose(f);
  return (flags & IFF_PROMISC) != 0;
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_packet <trigger> <work> <mode>");
  const char *mode = argv[3];
  lo = if_nametoindex("lo");
  if (!lo) die("if_nametoindex(lo)");
  int tx = packet_socket(SOCK_RAW, 0, 0);

  if (!strcmp(mode, "spkt")) {
    int s = socket(AF_PACKET, SOCK_PACKET, htons(ETH_A));
    if (s < 0) die("socket(SOCK_PACKET)");
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    check("packet-spkt-alive", get_int(s, SOL_SOCKET, SO_TYPE) == SOCK_PACKET, "type %d",
          get_int(s, SOL_SOCKET, SO_TYPE));
    return verdict();
  }
  int raw = packet_socket(SOCK_RAW, ETH_A, 1);
  if (!strcmp(mode, "queued") || !strcmp(mode, "ring")) {
    if (!strcmp(mode, "queued")) send_frame(tx, ETH_A, "queued");
    if (!strcmp(mode, "ring")) {
      set_int(raw, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION");
      struct tpacket_req req = {.tp_block_size = 4096, .tp_block_nr = 2, .tp_frame_size = 2048,
                                .tp_frame_nr = 4};
      if (setsockopt(raw, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) die("RX_RING");
      if (mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, raw, 0) == MAP_FAILED) die("mmap");
      send_frame(tx, ETH_A, "ring");
      usleep(20000);
    }
    print_ready("pid=%d", getpid());
    wait_trigger(argv[1]);
    if (!strcmp(mode, "queued")) {
      char first[64] = "";
      int n = drain(raw, first, sizeof first, 14);
      check("packet-queued-kept", n == 1 && !strcmp(first, "queued"), "%d frames, %s", n, first);
    } else {
      check("packet-ring-kept", get_int(raw, SOL_PACKET, PACKET_VERSION) == TPACKET_V2,
            "version %d", get_int(raw, SOL_PACKET, PACKET_VERSION));
    }
    return verdict();
  }

  set_int(raw, SOL_PACKET, PACKET_AUXDATA, 1, "AUXDATA");
  set_int(raw, SOL_PACKET, PACKET_ORIGDEV, 1, "ORIGDEV");
  set_int(raw, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "VERSION");
  set_int(raw, SOL_PACKET, PACKET_RESERVE, 64, "RESERVE");
  set_int(raw, SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE, "TIMESTAMP");
  set_int(raw, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "QDISC_BYPASS");
  set_int(raw, SOL_SOCKET, SO_RCVBUF, 300000, "SO_RCVBUF");
  set_int(raw, SOL_SOCKET, SO_PRIORITY, 5, "SO_PRIORITY");
  struct packet_mreq promisc = {.mr_ifindex = lo, .mr_type = PACKET_MR_PROMISC};
  if (setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &promisc, sizeof promisc) != 0)
    die("PROMISC");
  struct packet_mreq mc = {.mr_ifindex = lo, .mr_type = PACKET_MR_MULTICAST, .mr_alen = 6};
  memcpy(mc.mr_address, MCAST, 6);
  if (setsockopt(raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mc, sizeof mc) != 0) die("MULTICAST");

  int dgram = packet_socket(SOCK_DGRAM, ETH_A, 1);
  /* Passes a packet whose first payload byte is 'A' (whole), drops the rest. */
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 'A', 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffff),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  struct sock_fprog prog = {.len = 4, .filter = code};
  if (setsockopt(dgram, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) die("filter");
  set_int(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, "IGNORE_OUTGOING");

  int fan1 = packet_socket(SOCK_RAW, ETH_F, 1), fan2 = packet_socket(SOCK_RAW, ETH_F, 1);
  int fanout = (getpid() & 0xffff) | (PACKET_FANOUT_HASH << 16);
  set_int(fan1, SOL_PACKET, PACKET_FANOUT, fanout, "FANOUT 1");
  set_int(fan2, SOL_PACKET, PACKET_FANOUT, fanout, "FANOUT 2");
  int idle = packet_socket(SOCK_RAW, 0, 0);
  set_int(idle, SOL_PACKET, PACKET_VNET_HDR, 1, "VNET_HDR");
  /* A child with a third socket of the group (the group spans processes) and the parent's
   * sockets inherited (shared): told by a pipe when the frames are sent, it exits with how
   * many its socket received (+ 100 when its fanout value changed). */
  int go[2];
  if (pipe(go) != 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    int fan3 = packet_socket(SOCK_RAW, ETH_F, 1);
    set_int(fan3, SOL_PACKET, PACKET_FANOUT, fanout, "FANOUT 3");
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(99);
    int n = drain(fan3, 0, 0, 0);
    _exit(n + (get_int(fan3, SOL_PACKET, PACKET_FANOUT) == fanout ? 0 : 100));
  }
  close(go[0]);

  char names[5][64];
  int socks[5] = {raw, dgram, fan1, fan2, idle};
  for (int i = 0; i < 5; i++) name_of(socks[i], names[i], sizeof names[i]);
  int rcvbuf = get_int(raw, SOL_SOCKET, SO_RCVBUF);
  print_ready("pid=%d", getpid());
  wait_trigger(argv[1]);

  for (int i = 0; i < 5; i++) {
    char now[64];
    name_of(socks[i], now, sizeof now);
    check("packet-names", !strcmp(now, names[i]), "socket %d: %s, was %s", i, now, names[i]);
  }
  check("packet-options",
        get_int(raw, SOL_PACKET, PACKET_AUXDATA) == 1 &&
            get_int(raw, SOL_PACKET, PACKET_ORIGDEV) == 1 &&
            get_int(raw, SOL_PACKET, PACKET_VERSION) == TPACKET_V2 &&
            get_int(raw, SOL_PACKET, PACKET_RESERVE) == 64 &&
            get_int(raw, SOL_PACKET, PACKET_TIMESTAMP) == SOF_TIMESTAMPING_RAW_HARDWARE &&
            get_int(raw, SOL_PACKET, PACKET_QDISC_BYPASS) == 1 &&
            get_int(raw, SOL_SOCKET, SO_RCVBUF) == rcvbuf &&
            get_int(raw, SOL_SOCKET, SO_PRIORITY) == 5 &&
            get_int(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING) == 1 &&
            get_int(idle, SOL_PACKET, PACKET_AUXDATA) == 0 &&
            get_int(idle, SOL_PACKET, PACKET_VNET_HDR) == 1,
        "auxdata %d origdev %d version %d reserve %d tstamp %d bypass %d rcvbuf %d/%d prio %d "
        "ignore %d idle auxdata %d vnet_hdr %d",
        get_int(raw, SOL_PACKET, PACKET_AUXDATA), get_int(raw, SOL_PACKET, PACKET_ORIGDEV),
        get_int(raw, SOL_PACKET, PACKET_VERSION), get_int(raw, SOL_PACKET, PACKET_RESERVE),
        get_int(raw, SOL_PACKET, PACKET_TIMESTAMP), get_int(raw, SOL_PACKET, PACKET_QDISC_BYPASS),
        get_int(raw, SOL_SOCKET, SO_RCVBUF), rcvbuf, get_int(raw, SOL_SOCKET, SO_PRIORITY),
        get_int(dgram, SOL_PACKET, PACKET_IGNORE_OUTGOING),
        get_int(idle, SOL_PACKET, PACKET_AUXDATA), get_int(idle, SOL_PACKET, PACKET_VNET_HDR));
  check("packet-memberships", lo_promisc() && has_mcast(), "lo promiscuous %d, multicast %d",
        lo_promisc(), has_mcast());
  struct sock_filter back[8];
  socklen_t blen = 8;
  int flen = getsockopt(dgram, SOL_SOCKET, SO_GET_FILTER, back, &blen) == 0 ? (int)blen : -1;
  check("packet-filter-kept", flen == 4 && !memcmp(back, code, sizeof code), "%d instructions",
        flen);
  check("packet-fanout",
        get_int(fan1, SOL_PACKET, PACKET_FANOUT) == fanout &&
            get_int(fan2, SOL_PACKET, PACKET_FANOUT) == fanout,
        "%#x %#x, was %#x", get_int(fan1, SOL_PACKET, PACKET_FANOUT),
        get_int(fan2, SOL_PACKET, PACKET_FANOUT), fanout);

  send_frame(tx, ETH_A, "Bdropped");
  send_frame(tx, ETH_A, "Apassed");
  send_frame(tx, ETH_F, "fanned");
  char first_raw[64] = "", first_dgram[64] = "";
  int n_raw = drain(raw, first_raw, sizeof first_raw, 14);
  int n_dgram = drain(dgram, first_dgram, sizeof first_dgram, 0);
  if (write(go[1], "g", 1) != 1) die("write");
  int n_fan = drain(fan1, 0, 0, 0) + drain(fan2, 0, 0, 0), status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status)) die("waitpid");
  check("packet-fanout-child", WEXITSTATUS(status) < 100, "child's fanout value changed");
  n_fan += WEXITSTATUS(status) % 100;
  check("packet-receives", n_raw >= 2 && !strcmp(first_raw, "Bdropped"), "raw: %d, first %s",
        n_raw, first_raw);
  check("packet-filter", n_dgram == 1 && !strcmp(first_dgram, "Apassed"), "dgram: %d, first %s",
        n_dgram, first_dgram);
  check("packet-fanout-one", n_fan == 1, "%d of the fanout group received it", n_fan);
  return verdict();
}
