package server

import (
	"context"
	"log/slog"
	"time"
)

// cleanupTimeout bounds a rollback. It runs on a fresh context: the request's may already
// be cancelled, which is often why we are rolling back.
const cleanupTimeout = time.Minute

// cleanups is a stack of undo steps, pushed right after each acquisition and run in reverse.
type cleanups struct {
	log   *slog.Logger
	steps []cleanupStep
}

type cleanupStep struct {
	name string
	fn   func(context.Context) error
}

func (c *cleanups) push(name string, fn func(context.Context) error) {
	c.steps = append(c.steps, cleanupStep{name: name, fn: fn})
}

// adopt moves other's steps onto c, as the newest: a branch that ran beside c's own steps.
func (c *cleanups) adopt(other *cleanups) {
	c.steps = append(c.steps, other.steps...)
	other.steps = nil
}

// run undoes every step, newest first. A failed step is logged and the rest still run: the
// resource ledger keeps what could not be released, and startup reconciles it.
func (c *cleanups) run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for i := len(c.steps) - 1; i >= 0; i-- {
		if err := c.steps[i].fn(ctx); err != nil {
			c.log.Warn("rollback step failed", "step", c.steps[i].name, "err", err)
		}
	}
	c.steps = nil
}
