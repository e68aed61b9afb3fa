package pvdriver_test

import (
	"fmt"

	"github.com/xenmig/xenmig/pvdriver"
)

// An idle 2 GiB guest committing 300 MiB: a normal tick shrinks it one step,
// a squeeze takes it straight to committed + 16 MiB.
func ExampleTarget() {
	p := pvdriver.DefaultParams()
	in := pvdriver.Inputs{CommittedKiB: 300 << 10, CurrentKiB: 2 << 20, MaxKiB: 2 << 20}
	d := pvdriver.Target(in, p)
	fmt.Println(d.TargetKiB>>10, "MiB", d.Change)

	in.Squeeze = true
	d = pvdriver.Target(in, p)
	fmt.Println(d.TargetKiB>>10, "MiB", d.Change)
	// Output:
	// 1792 MiB true
	// 316 MiB true
}
