package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvs-db/kvs/gateway"
)

// SIGHUP makes `kvs serve` read --client-tokens-file again and serve with
// its tokens from then on: a token revoked from the file is refused by the
// next request, without a restart. A file that no longer parses (or
// breaks a rule of the tokens) changes nothing: the node logs why, at
// error level, naming the file and line and never a token, and keeps the
// tokens in force. The cluster secret, NATS users and TLS certificates
// are still read once, at start.
//
// A SIGHUP no longer ends the process (Go's default for it), whether or
// not there is a tokens file to read.

// hangups delivers SIGHUPs from the moment it is made; stop ends that.
type hangups struct {
	c chan os.Signal
}

func notifyHangups() *hangups {
	h := &hangups{c: make(chan os.Signal, 1)}
	signal.Notify(h.c, syscall.SIGHUP)
	return h
}

func (h *hangups) stop() { signal.Stop(h.c) }

// serve calls reload for each SIGHUP (one for several that come while it
// runs) until ctx ends.
func (h *hangups) serve(ctx context.Context, reload func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.c:
			reload()
		}
	}
}

// reloadClientTokens reads a's tokens file again and gives its tokens to
// gw. On an error the tokens in force stay, and the error is logged and
// returned.
func reloadClientTokens(log *slog.Logger, gw *gateway.Gateway, a clientAuthOptions, secret string) error {
	if a.tokensFile == "" {
		log.Info("SIGHUP: nothing to reload (no --client-tokens-file)")
		return nil
	}
	rw, ro, err := readTokensFile(a.tokensFile, secret)
	if err == nil {
		err = gw.SetClientTokens(rw, ro)
	}
	if err != nil {
		log.Error("client tokens not reloaded; the tokens in force stay", "err", err)
		return err
	}
	log.Info("client tokens reloaded", "file", a.tokensFile, "read_write", len(rw), "read_only", len(ro))
	return nil
}
