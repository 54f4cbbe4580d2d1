// Command goprogram is bench/bench.sh's program for the Go language host (-g go): N
// component resources, registered one at a time, each once the previous one's URN has
// resolved and depending on it (BENCH_SHAPE=sequential), or all at once (parallel).
// It is a module of its own, built once per benchmark and run by the language host as a
// prebuilt binary (runtime option `binary`), so no run compiles it.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

type comp struct {
	pulumi.ResourceState
}

func main() {
	n, err := strconv.Atoi(os.Getenv("BENCH_N"))
	if err != nil {
		n = 10
	}
	sequential := os.Getenv("BENCH_SHAPE") == "sequential"
	pulumi.Run(func(ctx *pulumi.Context) error {
		var prev pulumi.Resource
		for i := 0; i < n; i++ {
			c := &comp{}
			var opts []pulumi.ResourceOption
			if prev != nil {
				opts = append(opts, pulumi.DependsOn([]pulumi.Resource{prev}))
			}
			if err := ctx.RegisterComponentResource("bench:index:Comp", fmt.Sprintf("comp-%d", i), c, opts...); err != nil {
				return err
			}
			if err := ctx.RegisterResourceOutputs(c, pulumi.Map{}); err != nil {
				return err
			}
			if sequential {
				// Register the next one only once this one's URN, an output, is known.
				done := make(chan struct{})
				c.URN().ApplyT(func(string) error { close(done); return nil })
				<-done
				prev = c
			}
		}
		ctx.Export("count", pulumi.Int(n))
		return nil
	})
}
