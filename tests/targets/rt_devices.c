/* Character devices with state of their own per open file
 * (tests/dump_devices_test.ts).
 *
 * usage: rt_devices <trigger-file> <device>...
 *
 * Opens each device named (kmsg: /dev/kmsg, one record read; kmsgw:
 * /dev/kmsg write-only; tun:
 * /dev/net/tun attached to a new interface; dma: /dev/cpu_dma_latency
 * with a 100 us request; null, urandom, kvm, loop-control: opened only),
 * printing "opened <name> fd <n>" or "skip <name> <why>" for each, then
 * "ready pid=<pid>"; waits for the trigger file, checks each opened fd
 * still works as set up (the tun fd still attached, the latency request
 * still in force), and exits 0 (1 on a failed check).
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdint.h>
#include <sys/ioctl.h>

int main(int argc, char **argv) {
  need_args(argc, 1, "rt_devices <trigger-file> <device>...");
  int tun = -1, dma = -1;
  for (int i = 2; i < argc; i++) {
    const char *n = argv[i];
    int fd = -1;
    if (!strcmp(n, "kmsg")) {
      fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
      char rec[8192];
      if (fd >= 0 && read(fd, rec, sizeof rec) < 0 && errno != EAGAIN) {
        printf("skip kmsg read: %s\n", strerror(errno));
        close(fd);
        continue;
      }
    } else if (!strcmp(n, "kmsgw")) {
      fd = open("/dev/kmsg", O_WRONLY); /* a logger: nothing of its own to lose */
    } else if (!strcmp(n, "tun")) {
      fd = open("/dev/net/tun", O_RDWR);
      struct ifreq ifr = {.ifr_flags = IFF_TUN | IFF_NO_PI};
      snprintf(ifr.ifr_name, IFNAMSIZ, "cryot%d", getpid() % 100000);
      if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) != 0) {
        printf("skip tun TUNSETIFF: %s\n", strerror(errno));
        close(fd);
        continue;
      }
      tun = fd;
    } else if (!strcmp(n, "dma")) {
      fd = open("/dev/cpu_dma_latency", O_RDWR);
      int32_t us = 100;
      if (fd >= 0 && write(fd, &us, sizeof us) != sizeof us) {
        printf("skip dma write: %s\n", strerror(errno));
        close(fd);
        continue;
      }
      dma = fd;
    } else {
      char path[64];
      snprintf(path, sizeof path, "/dev/%s", n);
      fd = open(path, O_RDONLY);
    }
    if (fd < 0) {
      printf("skip %s %s\n", n, strerror(errno));
      continue;
    }
    printf("opened %s fd %d\n", n, fd);
  }
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  wait_trigger(argv[1]);
  if (tun >= 0) {
    struct ifreq ifr = {0};
    check("tun-attached", ioctl(tun, TUNGETIFF, &ifr) == 0, "TUNGETIFF: %s", strerror(errno));
  }
  if (dma >= 0) {
    int32_t now = 0;
    check("dma-request", read(dma, &now, sizeof now) == sizeof now && now <= 100,
          "current latency target %d", now);
  }
  return verdict();
}
