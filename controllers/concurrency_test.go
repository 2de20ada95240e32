package controllers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestForEachConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, limit int
		wantPeak int
	}{
		{name: "none", n: 0, limit: 4, wantPeak: 0},
		{name: "fewer than the limit", n: 3, limit: 4, wantPeak: 3},
		{name: "more than the limit", n: 17, limit: 4, wantPeak: 4},
		{name: "one at a time", n: 5, limit: 1, wantPeak: 1},
		{name: "limit below one means one", n: 5, limit: 0, wantPeak: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := map[int]int{}
			var running, peak atomic.Int32
			var released atomic.Bool
			forEachConcurrently(context.Background(), tc.n, tc.limit, func(i int) {
				now := running.Add(1)
				for {
					p := peak.Load()
					if now <= p || peak.CompareAndSwap(p, now) {
						break
					}
				}
				// The first calls wait for each other, so that the peak is the limit even on
				// a slow machine; a limit that does not hold shows as a higher peak.
				for deadline := time.Now().Add(5 * time.Second); !released.Load() && time.Now().Before(deadline); {
					if int(running.Load()) >= tc.wantPeak {
						released.Store(true)
					}
					time.Sleep(time.Millisecond)
				}
				time.Sleep(time.Millisecond)
				running.Add(-1)
				mu.Lock()
				calls[i]++
				mu.Unlock()
			})
			if len(calls) != tc.n {
				t.Fatalf("%d indexes called, want %d", len(calls), tc.n)
			}
			for i, c := range calls {
				if c != 1 || i < 0 || i >= tc.n {
					t.Errorf("index %d called %d times", i, c)
				}
			}
			if int(peak.Load()) != tc.wantPeak {
				t.Errorf("peak concurrency %d, want %d", peak.Load(), tc.wantPeak)
			}
		})
	}

	t.Run("cancelled context skips the calls not started", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int32
		forEachConcurrently(ctx, 10, 1, func(int) {
			calls.Add(1)
			cancel()
		})
		// The first call cancels; at most one more may have been admitted in the race
		// between the semaphore and ctx.Done.
		if c := calls.Load(); c < 1 || c > 2 {
			t.Errorf("%d calls after cancelling in the first, want 1 or 2", c)
		}
	})
}
