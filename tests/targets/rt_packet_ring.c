/* Round-trip target for AF_PACKET sockets with mmapped rings, read the way
 * libpcap (tcpdump) reads them: a SOCK_RAW socket of ethertype 0x88b7 bound
 * to lo, its rx ring mapped, frames read in ring order from the program's
 * own position and given back (status TP_STATUS_KERNEL) one by one.
 *
 * Modes:
 * - v1, v2: TPACKET_V1 / V2, 8 frames of one page each (one frame a block),
 *   PACKET_RESERVE 32, plus an unused tx ring of 2 frames (one mapping holds
 *   both). Five frames received, three read and given back: the program waits
 *   on frame 3, frames 3 and 4 are its own (unread), the kernel fills frame 5
 *   next.
 * - v3: TPACKET_V3, 4 blocks of 8 KiB, 50 ms block timeout. Block 0 filled,
 *   handed over, read and given back; block 1 filled and handed over (unread,
 *   the program waits on it); one more frame sent just before "ready" lies in
 *   block 2, which the kernel is still filling at the dump.
 *
 * After the restore (the trigger) the target checks: the mapping is at the
 * same address; the version, reserve and ring sizes; the frames the program
 * owned are there with their bytes and status, the ones it gave back still
 * the kernel's; frames sent after the restore land, in order, where the
 * program reads next, round the end of the ring and back to its start (v3:
 * the late frame first).
 * - txused: v2 with a frame written into the tx ring (not sent): refused.
 * - v3full: v3 with every block handed over and none read (the kernel
 *   waits for the program to free one): refused, retry.
 * - fork: v2 with a child holding the socket and the ring's mapping
 *   (inherited): refused by name, the target left as it was.
 *
 * usage: rt_packet_ring <trigger> <work> <mode>
 * prints: ready pid=<pid> ring=<address>
 */
#define _GNU_SOURCE
#include "common.h"
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#define ETH_R 0x88b7
#define FRAME 4096
#define FRAMES 8
#define TX_FRAMES 2
#define V3_BLOCK 8192
#define V3_BLOCKS 4

static int lo, tx, sock, version;
static const char *argv_trigger;
static unsigned char *ring;
static unsigned pos; /* the program's next frame (v1/v2) or block (v3) */

static void send_frame_sized(const char *text, size_t size) {
  unsigned char frame[1500] = {0};
  memset(frame, 0xff, 6);
  frame[6] = 0x02;
  frame[12] = ETH_R >> 8;
  frame[13] = ETH_R & 0xff;
  snprintf((char *)frame + 14, sizeof frame - 14, "%s", text);
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_R),
                           .sll_ifindex = lo, .sll_halen = 6};
  memset(to.sll_addr, 0xff, 6);
  if (sendto(tx, frame, size, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)size) die("sendto");
}

static void send_frame(const char *text) { send_frame_sized(text, 64); }

static volatile unsigned *status_of(unsigned i) {
  return (volatile unsigned *)(ring + (size_t)i * FRAME);
}

/* Waits (up to 2 s) until frame/block `i` is the program's; 1 if it is. */
static int wait_user(unsigned i) {
  for (int t = 0; t < 400; t++) {
    volatile unsigned *st = version == TPACKET_V3
                                ? (volatile unsigned *)(ring + (size_t)i * V3_BLOCK + 8)
                                : status_of(i);
    if (*st & TP_STATUS_USER) return 1;
    struct pollfd p = {.fd = sock, .events = POLLIN};
    poll(&p, 1, 5);
  }
  return 0;
}

/* The payload of v1/v2 frame `i` (after the Ethernet header). */
static const char *payload(unsigned i) {
  unsigned char *f = ring + (size_t)i * FRAME;
  unsigned mac = version == TPACKET_V1 ? ((struct tpacket_hdr *)f)->tp_mac
                                       : ((struct tpacket2_hdr *)f)->tp_mac;
  return (const char *)f + mac + 14;
}

/* Reads the program's next v1/v2 frame into `out` and gives it back; 0 if none came. */
static int next_frame(char *out, size_t n) {
  if (!wait_user(pos)) return 0;
  snprintf(out, n, "%s", payload(pos));
  *status_of(pos) = TP_STATUS_KERNEL;
  pos = (pos + 1) % FRAMES;
  return 1;
}

/* The payloads of v3 block `b`, joined by ','. */
static void block_payloads(unsigned b, char *out, size_t n) {
  struct tpacket_block_desc *d = (struct tpacket_block_desc *)(ring + (size_t)b * V3_BLOCK);
  unsigned char *p = (unsigned char *)d + d->hdr.bh1.offset_to_first_pkt;
  out[0] = 0;
  for (unsigned k = 0; k < d->hdr.bh1.num_pkts; k++) {
    struct tpacket3_hdr *h = (struct tpacket3_hdr *)p;
    size_t len = strlen(out);
    snprintf(out + len, n - len, "%s%s", k ? "," : "", (char *)p + h->tp_mac + 14);
    p += h->tp_next_offset;
  }
}

/* Reads the program's next v3 block and gives it back; 0 if none was handed over. */
static int next_block(char *out, size_t n) {
  if (!wait_user(pos)) return 0;
  block_payloads(pos, out, n);
  ((struct tpacket_block_desc *)(ring + (size_t)pos * V3_BLOCK))->hdr.bh1.block_status =
      TP_STATUS_KERNEL;
  pos = (pos + 1) % V3_BLOCKS;
  return 1;
}

static int get_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len) != 0) return -2;
  return v;
}

/* "start-end perms" of the mapping holding `addr`, joined over adjacent pieces of the socket. */
static void mapping_of(void *addr, char *out, size_t n) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long lo_a = 0, hi_a = 0;
  char perms[8] = "";
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long s, e;
    char p[8];
    if (sscanf(line, "%lx-%lx %7s", &s, &e, p) != 3 || !strstr(line, "socket:[")) continue;
    if ((unsigned long)addr >= s && (unsigned long)addr < e) {
      lo_a = s, hi_a = e;
      snprintf(perms, sizeof perms, "%s", p);
    } else if (hi_a && s == hi_a) hi_a = e;
  }
  if (f) fclose(f);
  /* Pieces before addr's: scan again (the restore maps the ring in two or three pieces). */
  f = fopen("/proc/self/maps", "r");
  while (f && fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx", &s, &e) == 2 && strstr(line, "socket:[") && e == lo_a) lo_a = s;
  }
  if (f) fclose(f);
  snprintf(out, n, "%lx-%lx %s", lo_a, hi_a, perms);
}

static int v12(const char *mode) {
  version = !strcmp(mode, "v1") ? TPACKET_V1 : TPACKET_V2;
  if (setsockopt(sock, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) die("VERSION");
  int reserve = 32;
  if (setsockopt(sock, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof reserve) != 0) die("RESERVE");
  struct tpacket_req rx = {.tp_block_size = FRAME, .tp_block_nr = FRAMES, .tp_frame_size = FRAME,
                           .tp_frame_nr = FRAMES};
  if (setsockopt(sock, SOL_PACKET, PACKET_RX_RING, &rx, sizeof rx) != 0) die("RX_RING");
  struct tpacket_req txr = {.tp_block_size = FRAME, .tp_block_nr = TX_FRAMES,
                            .tp_frame_size = FRAME, .tp_frame_nr = TX_FRAMES};
  if (setsockopt(sock, SOL_PACKET, PACKET_TX_RING, &txr, sizeof txr) != 0) die("TX_RING");
  size_t size = (size_t)(FRAMES + TX_FRAMES) * FRAME;
  ring = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, sock, 0);
  if (ring == MAP_FAILED) die("mmap");
  struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_R), .sll_ifindex = lo};
  if (bind(sock, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
  char name[16], got[64];
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof name, "f%d", i);
    send_frame(name);
  }
  for (int i = 0; i < 3; i++)
    if (!next_frame(got, sizeof got) || strcmp(got, (snprintf(name, sizeof name, "f%d", i), name)))
      die("frames before the dump");
  if (!wait_user(4)) die("frame 4");
  if (!strcmp(mode, "txused")) {
    /* A frame written into the tx ring (not sent): the kernel's tx position shows nowhere. */
    unsigned char *txf = ring + (size_t)FRAMES * FRAME;
    memcpy(txf + TPACKET2_HDRLEN, "unsent", 6);
    ((struct tpacket2_hdr *)txf)->tp_len = 6;
  }
  pid_t child = 0;
  if (!strcmp(mode, "fork")) {
    /* A child that inherits the socket and its ring's mapping: refused. */
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (;;) pause();
    }
  }
  char before[128];
  mapping_of(ring, before, sizeof before);
  print_ready("pid=%d ring=%p", getpid(), (void *)ring);
  wait_trigger(argv_trigger);
  if (child > 0) kill(child, SIGKILL);
  char after[128];
  mapping_of(ring, after, sizeof after);
  check("ring-mapping", !strcmp(before, after), "before %s, after %s", before, after);
  check("ring-options",
        get_int(sock, SOL_PACKET, PACKET_VERSION) == version &&
            get_int(sock, SOL_PACKET, PACKET_RESERVE) == 32,
        "version %d reserve %d", get_int(sock, SOL_PACKET, PACKET_VERSION),
        get_int(sock, SOL_PACKET, PACKET_RESERVE));
  int given = 1;
  for (int i = 0; i < 3; i++) given &= (*status_of(i) & TP_STATUS_USER) == 0;
  for (int i = 5; i < FRAMES; i++) given &= (*status_of(i) & TP_STATUS_USER) == 0;
  check("ring-given-back", given, "a frame given back is the program's again");
  int owned = (*status_of(3) & TP_STATUS_USER) && (*status_of(4) & TP_STATUS_USER) &&
              !strcmp(payload(3), "f3") && !strcmp(payload(4), "f4");
  check("ring-owned-kept", owned, "frames 3 and 4: status %u %u, %s %s", *status_of(3),
        *status_of(4), payload(3), payload(4));
  /* Read on: f3, f4, then what is sent now, round the end of the ring. */
  char seq[256] = "";
  for (int i = 0; i < 2; i++)
    if (next_frame(got, sizeof got)) snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "%s ", got);
  for (int i = 0; i < 6; i++) {
    snprintf(name, sizeof name, "g%d", i);
    send_frame(name);
  }
  for (int i = 0; i < 6; i++)
    if (next_frame(got, sizeof got)) snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "%s ", got);
  check("ring-continues", !strcmp(seq, "f3 f4 g0 g1 g2 g3 g4 g5 "), "read %s", seq);
  check("ring-position", pos == 3, "the program is at frame %u", pos);
  return verdict();
}

static int v3(int full) {
  version = TPACKET_V3;
  if (setsockopt(sock, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) die("VERSION");
  struct tpacket_req3 rx = {.tp_block_size = V3_BLOCK, .tp_block_nr = V3_BLOCKS,
                            .tp_frame_size = 2048, .tp_frame_nr = V3_BLOCK / 2048 * V3_BLOCKS,
                            .tp_retire_blk_tov = 50};
  if (setsockopt(sock, SOL_PACKET, PACKET_RX_RING, &rx, sizeof rx) != 0) die("RX_RING");
  size_t size = (size_t)V3_BLOCKS * V3_BLOCK;
  ring = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, sock, 0);
  if (ring == MAP_FAILED) die("mmap");
  struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_R), .sll_ifindex = lo};
  if (bind(sock, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
  char got[256];
  if (full) {
    /* Frames of 1400 bytes until every block is handed over (each closed by the frame that did
     * not fit) and none read: the kernel waits for the program. */
    int sent = 0;
    while (sent < 64) {
      int all = 1;
      for (int b = 0; b < V3_BLOCKS; b++)
        all &= (((struct tpacket_block_desc *)(ring + (size_t)b * V3_BLOCK))->hdr.bh1.block_status &
                TP_STATUS_USER) != 0;
      if (all) break;
      send_frame_sized("x", 1400);
      sent++;
      usleep(1000);
    }
    if (sent == 64) die("the ring never filled");
    print_ready("pid=%d ring=%p", getpid(), (void *)ring);
    wait_trigger(argv_trigger);
    int read = 0;
    for (int b = 0; b < V3_BLOCKS; b++) {
      struct tpacket_block_desc *d = (struct tpacket_block_desc *)(ring + (size_t)pos * V3_BLOCK);
      if (!(d->hdr.bh1.block_status & TP_STATUS_USER)) break;
      read += d->hdr.bh1.num_pkts;
      next_block(got, sizeof got);
    }
    check("ring-full-kept", read > 0 && read < sent, "%d of %d frames read (the last ones dropped)",
          read, sent);
    return verdict();
  }
  send_frame("a");
  send_frame("b");
  if (!next_block(got, sizeof got) || strcmp(got, "a,b")) die("block 0");
  send_frame("c");
  send_frame("d");
  if (!wait_user(1)) die("block 1");
  usleep(20000);
  send_frame("late");
  usleep(2000);
  char before[128];
  mapping_of(ring, before, sizeof before);
  print_ready("pid=%d ring=%p", getpid(), (void *)ring);
  wait_trigger(argv_trigger);
  char after[128];
  mapping_of(ring, after, sizeof after);
  check("ring-mapping", !strcmp(before, after), "before %s, after %s", before, after);
  check("ring-options", get_int(sock, SOL_PACKET, PACKET_VERSION) == TPACKET_V3, "version %d",
        get_int(sock, SOL_PACKET, PACKET_VERSION));
  struct tpacket_block_desc *b0 = (struct tpacket_block_desc *)ring;
  check("ring-given-back", (b0->hdr.bh1.block_status & TP_STATUS_USER) == 0,
        "block 0 status %u", b0->hdr.bh1.block_status);
  char first[256];
  block_payloads(1, first, sizeof first);
  check("ring-owned-kept", !strcmp(first, "c,d"), "block 1 holds %s", first);
  char seq[512] = "";
  for (int i = 0; i < 2; i++)
    if (next_block(got, sizeof got)) snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "[%s]", got);
  /* Blocks 3, 0, 1 next: one frame each, handed over by the timeout. */
  const char *more[] = {"e", "f", "g"};
  for (int i = 0; i < 3; i++) {
    send_frame(more[i]);
    if (next_block(got, sizeof got)) snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "[%s]", got);
  }
  check("ring-continues", !strcmp(seq, "[c,d][late][e][f][g]"), "read %s", seq);
  check("ring-position", pos == 2, "the program is at block %u", pos);
  return verdict();
}

int main(int argc, char **argv) {
  need_args(argc, 3, "rt_packet_ring <trigger> <work> <mode>");
  argv_trigger = argv[1];
  lo = if_nametoindex("lo");
  if (!lo) die("if_nametoindex(lo)");
  tx = socket(AF_PACKET, SOCK_RAW, 0);
  sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_R));
  if (tx < 0 || sock < 0) die("socket(AF_PACKET)");
  if (!strcmp(argv[3], "v3") || !strcmp(argv[3], "v3full")) return v3(!strcmp(argv[3], "v3full"));
  return v12(argv[3]);
}
