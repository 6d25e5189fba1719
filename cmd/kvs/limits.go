package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/node"
)

// limitOptions are the bounds `kvs serve` sets on what peers can make a
// node hold or do (--max-hint-bytes-per-target, --max-hint-bytes,
// --hint-window, --max-scan-requests). Zero means the node's default,
// negative no bound; node.Config.Validate has the last word.
type limitOptions struct {
	maxHintBytesPerTarget int64
	maxHintBytes          int64
	hintWindow            time.Duration
	maxScanRequests       int
}

// parseLimits reads the limit flags of serve.
func parseLimits(c *cli.Context) limitOptions {
	return limitOptions{
		maxHintBytesPerTarget: c.Int64("max-hint-bytes-per-target"),
		maxHintBytes:          c.Int64("max-hint-bytes"),
		hintWindow:            c.Duration("hint-window"),
		maxScanRequests:       c.Int("max-scan-requests"),
	}
}

// apply sets the limits in cfg and returns it.
func (l limitOptions) apply(cfg node.Config) node.Config {
	cfg.MaxHintBytesPerTarget = l.maxHintBytesPerTarget
	cfg.MaxHintBytes = l.maxHintBytes
	cfg.HintWindow = l.hintWindow
	cfg.MaxScanRequests = l.maxScanRequests
	return cfg
}
