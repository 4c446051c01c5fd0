// A Go net/http server (built by the tests with `go build`): GET /n on
// 127.0.0.1:<port> answers "<requests> <ticks>", the request count shared by
// the handler goroutines (atomic) and the ticks of a goroutine bumping a
// count every 10 ms. Its first line says "ready <pid>".
package main

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	var n, ticks int64
	go func() {
		for range time.NewTicker(10 * time.Millisecond).C {
			atomic.AddInt64(&ticks, 1)
		}
	}()
	http.HandleFunc("/n", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d %d\n", atomic.AddInt64(&n, 1), atomic.LoadInt64(&ticks))
	})
	fmt.Println("ready", os.Getpid())
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
