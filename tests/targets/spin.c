/* A target that prints its pid and a marker, then loops in a known function. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

volatile unsigned long counter;

__attribute__((noinline)) void spin_forever(void) {
  for (;;) counter++;
}

int main(void) {
  printf("ready pid=%d\n", getpid());
  fflush(stdout);
  spin_forever();
  return 0;
}
