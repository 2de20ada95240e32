package controllers

import (
	"context"
	"strings"
	"time"
)

// stepTimes records how long each step of one reconcile took, for the "Reconciled" debug log:
// the time from apply to enforced is a chain of reconciles, and this says where it goes.
type stepTimes struct {
	last  time.Time
	steps []string
}

type stepTimesKey struct{}

// withStepTimes returns a context whose reconcile steps are timed from now.
func withStepTimes(ctx context.Context) (context.Context, *stepTimes) {
	st := &stepTimes{last: time.Now()}
	return context.WithValue(ctx, stepTimesKey{}, st), st
}

// stepDone records that the named step ended now; without a timer in ctx it does nothing.
func stepDone(ctx context.Context, name string) {
	st, ok := ctx.Value(stepTimesKey{}).(*stepTimes)
	if !ok {
		return
	}
	now := time.Now()
	st.steps = append(st.steps, name+"="+now.Sub(st.last).Round(time.Millisecond).String())
	st.last = now
}

func (st *stepTimes) String() string {
	return strings.Join(st.steps, " ")
}
