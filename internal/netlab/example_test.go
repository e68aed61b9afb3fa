package netlab_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/xenmig/xenmig/internal/netlab"
)

// A benchmark ties the lab to SIGINT and SIGTERM, so an interrupted run
// kills its processes and removes its namespaces, and clears what a crashed
// earlier run left behind before it starts.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := netlab.RemoveStale(ctx, ""); err != nil {
		log.Print(err)
	}
	lab, err := netlab.New(ctx, netlab.WithRate(1e9))
	if err != nil {
		log.Fatal(err) // errors.Is(err, netlab.ErrPermission): say to run as root
	}
	defer lab.Close()

	receiver := lab.Command(ctx, netlab.B, "xenmig", "receive", "--listen", lab.Addr(netlab.B)+":8002")
	if err := receiver.Start(); err != nil {
		log.Fatal(err)
	}
	sender := lab.Command(ctx, netlab.A, "xenmig", "migrate", "guest", lab.Addr(netlab.B)+":8002")
	out, err := sender.Output()
	fmt.Println(string(out), err)
}
