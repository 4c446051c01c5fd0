// A Go program that keeps the runtime busy (built by the tests with `go build`):
// two goroutines spin (the scheduler preempts them with SIGURG), one allocates
// (GC cycles), signal.Notify takes SIGUSR1 (prints "sig ... gc <cycles>") and
// SIGTERM (exits 7), and the main goroutine prints "tick <n>" every 50 ms.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

var sink []byte

func main() {
	var spins, allocs int64
	for i := 0; i < 2; i++ {
		go func() { // tight loops: the scheduler preempts them with SIGURG
			for {
				atomic.AddInt64(&spins, 1)
			}
		}()
	}
	go func() {
		for {
			sink = make([]byte, 1<<16) // garbage: GC cycles
			atomic.AddInt64(&allocs, 1)
			if atomic.LoadInt64(&allocs)%1000 == 0 {
				runtime.Gosched()
			}
		}
	}()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGTERM)
	fmt.Println("ready", os.Getpid())
	t := time.NewTicker(50 * time.Millisecond)
	n := 0
	for {
		select {
		case s := <-sigs:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("sig %v gc %d spins>0 %v\n", s, ms.NumGC, atomic.LoadInt64(&spins) > 0)
			if s == syscall.SIGTERM {
				os.Exit(7)
			}
		case <-t.C:
			n++
			fmt.Printf("tick %d\n", n)
		}
	}
}
