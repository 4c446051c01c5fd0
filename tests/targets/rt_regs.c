/* Round-trip target for CPU state: loads known values into the general
 * purpose registers (rbx, rcx, rdx, rbp, r8-r15), the x87 stack and control
 * word, MXCSR, xmm0-15 and the upper halves of ymm0-15 (and, with AVX-512,
 * the upper halves of zmm0-15, zmm16-31 and k0-k7), sets the direction and
 * alignment-check flags, a gs_base and a TLS variable, prints "ready ..."
 * (with the address of its loop counter, iter=, for tests to wait on), then
 * spins in an assembly loop that re-checks every register against
 * memory constants on every iteration (a sticky mismatch mask) until a
 * SIGUSR1 handler sets a flag. Signal delivery and sigreturn preserve all
 * of that state, so only a broken checkpoint/restore can change it.
 * Afterwards it prints one "check <name> ok|FAIL <detail>" line per item,
 * then PASS or FAIL.
 *
 * usage: rt_regs [noavx512] [thread]
 *   noavx512: use only the AVX (ymm) part even when AVX-512 is available;
 *   thread: all of the above (the setup, the loop, the checks) on a second
 *   thread, the main thread waiting for it in pthread_join.
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

/* ------------------------------------------------------ context layout */
/* One 64-byte aligned block shared with the assembly loop (rdi points at it). */
#define O_GPR 0 /* 12 expected GPRs: rbx rcx rdx rbp r8..r15 */
#define O_RSP 96 /* rsp at the loop (written by the loop itself) */
#define O_FLAGS 104 /* expected eflags & (DF|AC) */
#define O_FSB 112 /* expected fs_base */
#define O_GSB 120 /* expected gs_base */
#define O_MASK 128 /* sticky mismatch bits, word 0 */
#define O_MASK2 136 /* sticky mismatch bits, word 1 (AVX-512) */
#define O_ITER 144 /* loop iterations */
#define O_HAVE512 152 /* nonzero: use zmm/k registers */
#define O_HAVEFSGS 160 /* nonzero: rdfsbase/rdgsbase usable */
#define O_FCW 168 /* expected x87 control word (u16) */
#define O_MXCSR 176 /* expected MXCSR (u32) */
#define O_SAVEDMXCSR 184 /* caller's MXCSR */
#define O_ZMM 256 /* 32 x 64 bytes: expected vector registers */
#define O_K 2304 /* 8 x 8: expected opmask registers */
#define O_ST 2368 /* 8 x 16: expected x87 registers st0..st7 (10 bytes used) */
#define O_SCR 2496 /* 64 bytes: vector scratch */
#define O_FX 2560 /* 512 bytes: fxsave64 area used by the loop */
#define O_OBS_GPR 3072 /* observed at loop exit: 12 GPRs */
#define O_OBS_RSP 3168
#define O_OBS_FLAGS 3176
#define O_OBS_FSB 3184
#define O_OBS_GSB 3192
#define O_OBS_K 3200 /* 8 x 8 */
#define O_OBS_ZMM 3264 /* 32 x 64 */
#define O_OBS_FX 5312 /* 512 */
#define CTX_SIZE 5824

/* Mismatch bits, word 0. */
#define B_GPR 0 /* 0..11 */
#define B_RSP 12
#define B_FLAGS 13
#define B_FCW 14
#define B_FTAG 15 /* x87 TOP and tag word */
#define B_MXCSR 16
#define B_ST 17 /* 17..24 */
#define B_FSB 25
#define B_GSB 26
#define B_XMM 32 /* 32..47 */
#define B_YMMH 48 /* 48..63 */
/* Mismatch bits, word 1. */
#define B_ZMMH 0 /* 0..15: upper 256 bits of zmm0..15 */
#define B_ZMM16 16 /* 16..31: zmm16..31 */
#define B_KREG 32 /* 32..39 */

#define DF_AC 0x40400

#define S_(x) #x
#define S(x) S_(x)
#define SET(name) ".set " #name ", " S(name) "\n"

static uint8_t ctx[CTX_SIZE] __attribute__((aligned(64)));
#define Q(off) (*(uint64_t *)(ctx + (off)))

static volatile int stop_flag;

/* ------------------------------------------------------- the asm loop */
/* void regs_spin(uint8_t *ctx, volatile int *flag) */
extern void regs_spin(uint8_t *c, volatile int *flag);
extern char regs_loop[], regs_loop_end[];

__asm__(
    SET(O_GPR) SET(O_RSP) SET(O_FLAGS) SET(O_FSB) SET(O_GSB) SET(O_MASK) SET(O_MASK2)
    SET(O_ITER) SET(O_HAVE512) SET(O_HAVEFSGS) SET(O_FCW) SET(O_MXCSR) SET(O_SAVEDMXCSR)
    SET(O_ZMM) SET(O_K) SET(O_ST) SET(O_SCR) SET(O_FX) SET(O_OBS_GPR) SET(O_OBS_RSP)
    SET(O_OBS_FLAGS) SET(O_OBS_FSB) SET(O_OBS_GSB) SET(O_OBS_K) SET(O_OBS_ZMM) SET(O_OBS_FX)
    SET(B_GPR) SET(B_RSP) SET(B_FLAGS) SET(B_FCW) SET(B_FTAG) SET(B_MXCSR) SET(B_ST) SET(B_FSB)
    SET(B_GSB) SET(B_XMM) SET(B_YMMH) SET(B_ZMMH) SET(B_ZMM16) SET(B_KREG) SET(DF_AC)
    /* cmp a 64-bit register or memory-loaded rax with expected; set bit on mismatch */
    ".macro CHKR reg, off, word, bit\n"
    "  cmpq \\off(%rdi), \\reg\n"
    "  je 1f\n"
    "  btsq $(\\bit), \\word(%rdi)\n"
    "1:\n"
    ".endm\n"
    ".macro CHKM soff, eoff, word, bit\n"
    "  movq \\soff(%rdi), %rax\n"
    "  CHKR %rax, \\eoff, \\word, \\bit\n"
    ".endm\n"
    ".text\n"
    ".globl regs_spin\n"
    ".type regs_spin, @function\n"
    "regs_spin:\n"
    "  pushq %rbx\n"
    "  pushq %rbp\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  stmxcsr O_SAVEDMXCSR(%rdi)\n"
    /* x87: empty stack, control word, then st7 first so that st0 = ST[0] */
    "  fninit\n"
    "  fldcw O_FCW(%rdi)\n"
    ".irp i,7,6,5,4,3,2,1,0\n"
    "  fldt O_ST+16*\\i(%rdi)\n"
    ".endr\n"
    "  ldmxcsr O_MXCSR(%rdi)\n"
    "  cmpq $0, O_HAVE512(%rdi)\n"
    "  je 2f\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "  vmovdqu64 O_ZMM+64*\\i(%rdi), %zmm\\i\n"
    ".endr\n"
    ".irp i,0,1,2,3,4,5,6,7\n"
    "  kmovq O_K+8*\\i(%rdi), %k\\i\n"
    ".endr\n"
    "  jmp 3f\n"
    "2:\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  vmovdqu O_ZMM+64*\\i(%rdi), %ymm\\i\n"
    ".endr\n"
    "3:\n"
    "  movq %rsp, O_RSP(%rdi)\n"
    "  movq O_GPR+0(%rdi), %rbx\n"
    "  movq O_GPR+8(%rdi), %rcx\n"
    "  movq O_GPR+16(%rdi), %rdx\n"
    "  movq O_GPR+24(%rdi), %rbp\n"
    "  movq O_GPR+32(%rdi), %r8\n"
    "  movq O_GPR+40(%rdi), %r9\n"
    "  movq O_GPR+48(%rdi), %r10\n"
    "  movq O_GPR+56(%rdi), %r11\n"
    "  movq O_GPR+64(%rdi), %r12\n"
    "  movq O_GPR+72(%rdi), %r13\n"
    "  movq O_GPR+80(%rdi), %r14\n"
    "  movq O_GPR+88(%rdi), %r15\n"
    /* DF and AC on (every access below is naturally aligned) */
    "  std\n"
    "  pushfq\n"
    "  orq $0x40000, (%rsp)\n"
    "  popfq\n"
    ".globl regs_loop\n"
    "regs_loop:\n"
    "  CHKR %rbx, O_GPR+0, O_MASK, B_GPR+0\n"
    "  CHKR %rcx, O_GPR+8, O_MASK, B_GPR+1\n"
    "  CHKR %rdx, O_GPR+16, O_MASK, B_GPR+2\n"
    "  CHKR %rbp, O_GPR+24, O_MASK, B_GPR+3\n"
    "  CHKR %r8, O_GPR+32, O_MASK, B_GPR+4\n"
    "  CHKR %r9, O_GPR+40, O_MASK, B_GPR+5\n"
    "  CHKR %r10, O_GPR+48, O_MASK, B_GPR+6\n"
    "  CHKR %r11, O_GPR+56, O_MASK, B_GPR+7\n"
    "  CHKR %r12, O_GPR+64, O_MASK, B_GPR+8\n"
    "  CHKR %r13, O_GPR+72, O_MASK, B_GPR+9\n"
    "  CHKR %r14, O_GPR+80, O_MASK, B_GPR+10\n"
    "  CHKR %r15, O_GPR+88, O_MASK, B_GPR+11\n"
    "  CHKR %rsp, O_RSP, O_MASK, B_RSP\n"
    "  pushfq\n"
    "  popq %rax\n"
    "  andq $DF_AC, %rax\n"
    "  CHKR %rax, O_FLAGS, O_MASK, B_FLAGS\n"
    /* x87 and MXCSR through fxsave64 (which changes no state) */
    "  fxsave64 O_FX(%rdi)\n"
    "  movzwq O_FX+0(%rdi), %rax\n"
    "  CHKR %rax, O_FCW, O_MASK, B_FCW\n"
    "  movzwq O_FX+2(%rdi), %rax\n"
    "  andq $0x3800, %rax\n" /* TOP must be 0 */
    "  jne 11f\n"
    "  movzbq O_FX+4(%rdi), %rax\n"
    "  cmpq $0xff, %rax\n" /* all eight registers valid */
    "  je 4f\n"
    "11:\n"
    "  btsq $B_FTAG, O_MASK(%rdi)\n"
    "4:\n"
    "  movl O_FX+24(%rdi), %eax\n"
    "  CHKR %rax, O_MXCSR, O_MASK, B_MXCSR\n"
    ".irp i,0,1,2,3,4,5,6,7\n"
    "  CHKM O_FX+32+16*\\i, O_ST+16*\\i, O_MASK, B_ST+\\i\n"
    "  movzwq O_FX+40+16*\\i(%rdi), %rax\n"
    "  CHKR %rax, O_ST+16*\\i+8, O_MASK, B_ST+\\i\n"
    ".endr\n"
    /* vector registers: store to scratch, compare by quadword */
    "  cmpq $0, O_HAVE512(%rdi)\n"
    "  je 5f\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  vmovdqu64 %zmm\\i, O_SCR(%rdi)\n"
    "  CHKM O_SCR+0, O_ZMM+64*\\i+0, O_MASK, B_XMM+\\i\n"
    "  CHKM O_SCR+8, O_ZMM+64*\\i+8, O_MASK, B_XMM+\\i\n"
    "  CHKM O_SCR+16, O_ZMM+64*\\i+16, O_MASK, B_YMMH+\\i\n"
    "  CHKM O_SCR+24, O_ZMM+64*\\i+24, O_MASK, B_YMMH+\\i\n"
    "  CHKM O_SCR+32, O_ZMM+64*\\i+32, O_MASK2, B_ZMMH+\\i\n"
    "  CHKM O_SCR+40, O_ZMM+64*\\i+40, O_MASK2, B_ZMMH+\\i\n"
    "  CHKM O_SCR+48, O_ZMM+64*\\i+48, O_MASK2, B_ZMMH+\\i\n"
    "  CHKM O_SCR+56, O_ZMM+64*\\i+56, O_MASK2, B_ZMMH+\\i\n"
    ".endr\n"
    ".irp i,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "  vmovdqu64 %zmm\\i, O_SCR(%rdi)\n"
    ".irp w,0,8,16,24,32,40,48,56\n"
    "  CHKM O_SCR+\\w, O_ZMM+64*\\i+\\w, O_MASK2, B_ZMM16+\\i-16\n"
    ".endr\n"
    ".endr\n"
    ".irp i,0,1,2,3,4,5,6,7\n"
    "  kmovq %k\\i, %rax\n"
    "  CHKR %rax, O_K+8*\\i, O_MASK2, B_KREG+\\i\n"
    ".endr\n"
    "  jmp 6f\n"
    "5:\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  vmovdqu %ymm\\i, O_SCR(%rdi)\n"
    "  CHKM O_SCR+0, O_ZMM+64*\\i+0, O_MASK, B_XMM+\\i\n"
    "  CHKM O_SCR+8, O_ZMM+64*\\i+8, O_MASK, B_XMM+\\i\n"
    "  CHKM O_SCR+16, O_ZMM+64*\\i+16, O_MASK, B_YMMH+\\i\n"
    "  CHKM O_SCR+24, O_ZMM+64*\\i+24, O_MASK, B_YMMH+\\i\n"
    ".endr\n"
    "6:\n"
    "  cmpq $0, O_HAVEFSGS(%rdi)\n"
    "  je 7f\n"
    "  rdfsbase %rax\n"
    "  CHKR %rax, O_FSB, O_MASK, B_FSB\n"
    "  rdgsbase %rax\n"
    "  CHKR %rax, O_GSB, O_MASK, B_GSB\n"
    "7:\n"
    "  incq O_ITER(%rdi)\n"
    "  pause\n"
    "  cmpl $0, (%rsi)\n"
    "  je regs_loop\n"
    ".globl regs_loop_end\n"
    "regs_loop_end:\n"
    /* record what the registers hold now */
    "  movq %rbx, O_OBS_GPR+0(%rdi)\n"
    "  movq %rcx, O_OBS_GPR+8(%rdi)\n"
    "  movq %rdx, O_OBS_GPR+16(%rdi)\n"
    "  movq %rbp, O_OBS_GPR+24(%rdi)\n"
    "  movq %r8, O_OBS_GPR+32(%rdi)\n"
    "  movq %r9, O_OBS_GPR+40(%rdi)\n"
    "  movq %r10, O_OBS_GPR+48(%rdi)\n"
    "  movq %r11, O_OBS_GPR+56(%rdi)\n"
    "  movq %r12, O_OBS_GPR+64(%rdi)\n"
    "  movq %r13, O_OBS_GPR+72(%rdi)\n"
    "  movq %r14, O_OBS_GPR+80(%rdi)\n"
    "  movq %r15, O_OBS_GPR+88(%rdi)\n"
    "  movq %rsp, O_OBS_RSP(%rdi)\n"
    "  pushfq\n"
    "  popq %rax\n"
    "  movq %rax, O_OBS_FLAGS(%rdi)\n"
    "  fxsave64 O_OBS_FX(%rdi)\n"
    "  cmpq $0, O_HAVE512(%rdi)\n"
    "  je 8f\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "  vmovdqu64 %zmm\\i, O_OBS_ZMM+64*\\i(%rdi)\n"
    ".endr\n"
    ".irp i,0,1,2,3,4,5,6,7\n"
    "  kmovq %k\\i, %rax\n"
    "  movq %rax, O_OBS_K+8*\\i(%rdi)\n"
    ".endr\n"
    "  jmp 9f\n"
    "8:\n"
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
    "  vmovdqu %ymm\\i, O_OBS_ZMM+64*\\i(%rdi)\n"
    ".endr\n"
    "9:\n"
    "  cmpq $0, O_HAVEFSGS(%rdi)\n"
    "  je 10f\n"
    "  rdfsbase %rax\n"
    "  movq %rax, O_OBS_FSB(%rdi)\n"
    "  rdgsbase %rax\n"
    "  movq %rax, O_OBS_GSB(%rdi)\n"
    "10:\n"
    /* back to what the C ABI expects */
    "  cld\n"
    "  pushfq\n"
    "  andq $~0x40000, (%rsp)\n"
    "  popfq\n"
    "  fninit\n"
    "  ldmxcsr O_SAVEDMXCSR(%rdi)\n"
    "  vzeroupper\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbp\n"
    "  popq %rbx\n"
    "  ret\n"
    ".size regs_spin, .-regs_spin\n");

/* -------------------------------------------------------------- checks */

static void on_usr1(int sig) {
  (void)sig;
  stop_flag = 1;
}

static __thread uint64_t tls_value = 0x715715715715ULL;
static uint8_t gs_target[64];

static uint64_t vec_word(int reg, int word) {
  return (0x9E3779B97F4A7C15ULL * (uint64_t)(reg * 8 + word + 1)) ^ 0xA5A5000000000000ULL;
}

/* First mismatching bit in [lo, lo+n) of a mask word, or -1. */
static int first_bit(uint64_t mask, int lo, int n) {
  for (int i = 0; i < n; i++)
    if (mask & (1ULL << (lo + i))) return i;
  return -1;
}

static const char *gpr_names[12] = {"rbx", "rcx", "rdx", "rbp", "r8",  "r9",
                                    "r10", "r11", "r12", "r13", "r14", "r15"};

static int want512 = 1;

static int body(void);

static void *body_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)body();
}

int main(int argc, char **argv) {
  int threaded = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "noavx512") == 0) want512 = 0;
    if (strcmp(argv[i], "thread") == 0) threaded = 1;
  }
  if (!threaded) return body();
  pthread_t th;
  if (pthread_create(&th, NULL, body_thread, NULL) != 0) {
    printf("setup failed: pthread_create\nFAIL\n");
    return 2;
  }
  void *rc;
  pthread_join(th, &rc);
  return (int)(intptr_t)rc;
}

static int body(void) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx")) {
    printf("setup failed: this CPU has no AVX\nFAIL\n");
    return 2;
  }
  int have512 = want512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  int havefsgs = (getauxval(AT_HWCAP2) & 2 /* HWCAP2_FSGSBASE */) != 0;

  static const uint64_t gprs[12] = {
      0x0123456789abcdefULL, 0xfedcba9876543210ULL, 0x8000000000000001ULL, 0x00000000deadbeefULL,
      0x8888888888888888ULL, 0x9999999999999999ULL, 0xaaaaaaaaaaaaaaaaULL, 0xbbbbbbbbbbbbbbbbULL,
      0xc0c1c2c3c4c5c6c7ULL, 0xd0d1d2d3d4d5d6d7ULL, 0xe0e1e2e3e4e5e6e7ULL, 0xf0f1f2f3f4f5f6f7ULL};
  memcpy(ctx + O_GPR, gprs, sizeof gprs);
  for (int r = 0; r < 32; r++)
    for (int w = 0; w < 8; w++) Q(O_ZMM + 64 * r + 8 * w) = vec_word(r, w);
  for (int k = 0; k < 8; k++) Q(O_K + 8 * k) = 0x1357924680aceb00ULL + (uint64_t)k * 0x1111;
  static const long double st[8] = {3.14159265358979323846264338327950288L,
                                    -2.5e-300L,
                                    1e4000L,
                                    1.0L / 3.0L,
                                    -0.0L,
                                    __builtin_infl(),
                                    12345.6789L,
                                    -1e-4000L};
  for (int i = 0; i < 8; i++) memcpy(ctx + O_ST + 16 * i, &st[i], 10);
  Q(O_FCW) = 0x0e7f; /* double precision, round toward zero, all exceptions masked */
  Q(O_MXCSR) = 0xffc0; /* FTZ, round toward zero, all masked, DAZ */
  Q(O_FLAGS) = DF_AC;
  Q(O_HAVE512) = have512;
  Q(O_HAVEFSGS) = havefsgs;

  /* fs_base (glibc's TLS) and a gs_base of our own */
  if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gs_target) != 0) {
    printf("setup failed: ARCH_SET_GS\nFAIL\n");
    return 2;
  }
  unsigned long fsb = 0, gsb = 0;
  syscall(SYS_arch_prctl, ARCH_GET_FS, &fsb);
  syscall(SYS_arch_prctl, ARCH_GET_GS, &gsb);
  Q(O_FSB) = fsb;
  Q(O_GSB) = gsb;
  tls_value = 0x7157157157150001ULL;
  uint64_t *tls_addr = &tls_value;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);

  print_ready("pid=%d loop=%p-%p avx512=%s fsgsbase=%s iter=%p", getpid(), (void *)regs_loop,
              (void *)regs_loop_end, have512 ? "yes" : "no", havefsgs ? "yes" : "no",
              (void *)&Q(O_ITER));

  regs_spin(ctx, &stop_flag);

  uint64_t m = Q(O_MASK), m2 = Q(O_MASK2);
  printf("info iterations %lu mask %016lx mask2 %016lx\n", (unsigned long)Q(O_ITER),
         (unsigned long)m, (unsigned long)m2);

  int g = first_bit(m, B_GPR, 12);
  check("gpr", g < 0, "%s was %016lx, expected %016lx", g >= 0 ? gpr_names[g] : "",
        g >= 0 ? (unsigned long)Q(O_OBS_GPR + 8 * g) : 0UL, g >= 0 ? (unsigned long)gprs[g] : 0UL);
  check("rsp", !(m & (1ULL << B_RSP)), "rsp %lx, expected %lx", (unsigned long)Q(O_OBS_RSP),
        (unsigned long)Q(O_RSP));
  check("eflags-df-ac", !(m & (1ULL << B_FLAGS)), "eflags %lx", (unsigned long)Q(O_OBS_FLAGS));
  uint16_t fcw, fsw;
  memcpy(&fcw, ctx + O_OBS_FX, 2);
  memcpy(&fsw, ctx + O_OBS_FX + 2, 2);
  check("x87-control-word", !(m & (1ULL << B_FCW)), "fcw %04x, expected 0e7f", fcw);
  check("x87-top-tags", !(m & (1ULL << B_FTAG)), "fsw %04x ftw %02x", fsw, ctx[O_OBS_FX + 4]);
  int s = first_bit(m, B_ST, 8);
  check("x87-stack", s < 0, "st%d differs", s);
  uint32_t mxcsr;
  memcpy(&mxcsr, ctx + O_OBS_FX + 24, 4);
  check("mxcsr", !(m & (1ULL << B_MXCSR)), "mxcsr %08x, expected 0000ffc0", mxcsr);
  int x = first_bit(m, B_XMM, 16);
  check("xmm", x < 0, "xmm%d low qword %016lx, expected %016lx", x,
        x >= 0 ? (unsigned long)Q(O_OBS_ZMM + 64 * x) : 0UL,
        x >= 0 ? (unsigned long)vec_word(x, 0) : 0UL);
  int y = first_bit(m, B_YMMH, 16);
  check("ymm-upper", y < 0, "ymm%d bits 128-191 %016lx, expected %016lx", y,
        y >= 0 ? (unsigned long)Q(O_OBS_ZMM + 64 * y + 16) : 0UL,
        y >= 0 ? (unsigned long)vec_word(y, 2) : 0UL);
  if (have512) {
    int z = first_bit(m2, B_ZMMH, 16);
    check("zmm-upper", z < 0, "zmm%d bits 256-319 %016lx, expected %016lx", z,
          z >= 0 ? (unsigned long)Q(O_OBS_ZMM + 64 * z + 32) : 0UL,
          z >= 0 ? (unsigned long)vec_word(z, 4) : 0UL);
    int h = first_bit(m2, B_ZMM16, 16);
    check("zmm16-31", h < 0, "zmm%d differs (first qword %016lx)", h + 16,
          h >= 0 ? (unsigned long)Q(O_OBS_ZMM + 64 * (h + 16)) : 0UL);
    int k = first_bit(m2, B_KREG, 8);
    check("opmask", k < 0, "k%d %016lx", k, k >= 0 ? (unsigned long)Q(O_OBS_K + 8 * k) : 0UL);
  }
  unsigned long fsb2 = 0, gsb2 = 0;
  syscall(SYS_arch_prctl, ARCH_GET_FS, &fsb2);
  syscall(SYS_arch_prctl, ARCH_GET_GS, &gsb2);
  check("fs-base", fsb2 == fsb && !(m & (1ULL << B_FSB)), "fs_base %lx (in loop %lx), was %lx",
        fsb2, (unsigned long)Q(O_OBS_FSB), fsb);
  check("gs-base", gsb2 == gsb && !(m & (1ULL << B_GSB)), "gs_base %lx (in loop %lx), was %lx",
        gsb2, (unsigned long)Q(O_OBS_GSB), gsb);
  check("tls", &tls_value == tls_addr && tls_value == 0x7157157157150001ULL,
        "tls variable at %p = %lx (was at %p)", (void *)&tls_value, (unsigned long)tls_value,
        (void *)tls_addr);
  check("mask-words", m == 0 && m2 == 0, "mask %016lx mask2 %016lx", (unsigned long)m,
        (unsigned long)m2);

  return verdict();
}
