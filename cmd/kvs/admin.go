package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/gateway"
)

// The topology commands: each POSTs one command to a node's /admin/
// endpoint (with the cluster secret) and, with --wait, follows the change
// on /ring until it has finished.

// adminFlags are the flags every topology command takes: --url, the
// secret flags, --timeout, then more.
func adminFlags(timeout time.Duration, more ...cli.Flag) []cli.Flag {
	flags := append([]cli.Flag{urlFlag(), caFlag()}, secretFlags("the cluster secret, when the cluster has one")...)
	flags = append(flags, timeoutFlag(timeout))
	return append(flags, more...)
}

// adminSecret reads the secret the admin commands send; a node checks it,
// so it is not held to the rules of checkSecret here.
func adminSecret(c *cli.Context) (string, error) {
	s, err := readSecret(c)
	if err != nil {
		return "", usageError("%v", err)
	}
	return s, nil
}

func waitFlags(d time.Duration) []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "wait", Value: true, Usage: "follow the change until it has finished, printing its progress", EnvVars: envVars("wait")},
		&cli.DurationFlag{Name: "wait-timeout", Value: d, Usage: "give up waiting after this long (the change goes on)", EnvVars: envVars("wait-timeout")},
	}
}

func decommissionCommand() *cli.Command {
	return &cli.Command{
		Name:  "decommission",
		Usage: "retire the node at --url: it streams its ranges to the members taking them over, then leaves the ring and stops",
		Description: "Refused, with nothing changed, when fewer than N members would remain or another\n" +
			"topology change is in progress.",
		Flags: append(adminFlags(15*time.Second), waitFlags(time.Hour)...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("decommission takes no arguments; --url names the node")
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			secret, err := adminSecret(c)
			if err != nil {
				return err
			}
			ring, err := postAdmin(c, base, secret, "/admin/decommission", nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "decommission of %s begun at epoch %d\n", ring.Self, ring.Epoch)
			return waitRemoved(c, base, secret, ring, ring.Self)
		},
	}
}

func removenodeCommand() *cli.Command {
	return &cli.Command{
		Name:      "removenode",
		Usage:     "remove a dead member: the others re-replicate its ranges from the surviving copies",
		ArgsUsage: "ID",
		Description: "Ask any live node (--url). A member that node sees alive is refused unless\n" +
			"--force is given: decommission a live node instead. Hints for the member are dropped.",
		Flags: append(adminFlags(15*time.Second,
			&cli.BoolFlag{Name: "force", Usage: "remove the member even though it is alive", EnvVars: envVars("force")},
		), waitFlags(time.Hour)...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("removenode wants the ID of the member to remove")
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			secret, err := adminSecret(c)
			if err != nil {
				return err
			}
			id := c.Args().Get(0)
			q := url.Values{"id": {id}}
			if c.Bool("force") {
				q.Set("force", "true")
			}
			ring, err := postAdmin(c, base, secret, "/admin/removenode", q)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "removal of %s begun at epoch %d\n", id, ring.Epoch)
			return waitRemoved(c, base, secret, ring, id)
		},
	}
}

func abortCommand() *cli.Command {
	return &cli.Command{
		Name:  "abort",
		Usage: "abandon the pending topology change: a joining member is removed, a leaving one turns normal",
		Flags: adminFlags(15 * time.Second),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("abort takes no arguments")
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			secret, err := adminSecret(c)
			if err != nil {
				return err
			}
			ring, err := postAdmin(c, base, secret, "/admin/abort", nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "change abandoned; epoch %d\n", ring.Epoch)
			return nil
		},
	}
}

// postAdmin POSTs to an admin endpoint, with secret as bearer token when it
// is not empty, and decodes the ring it answers.
func postAdmin(c *cli.Context, base, secret, path string, q url.Values) (gateway.RingJSON, error) {
	var ring gateway.RingJSON
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(c.Context, http.MethodPost, u, nil)
	if err != nil {
		return ring, err
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := doRequest(c, req)
	if err != nil {
		return ring, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return ring, cli.Exit(responseError(resp).Error(), 1)
	}
	if err := decodeJSON(resp, &ring); err != nil {
		return ring, fmt.Errorf("decoding the answer of %s: %w", path, err)
	}
	return ring, nil
}

// waitRemoved follows /ring until member id is removed, printing the
// change's progress every few seconds. When the node at base stops
// answering (a decommissioned node exits), it asks the other members. It
// sends the secret, which a node with --protect-cluster-info asks for.
func waitRemoved(c *cli.Context, base, secret string, last gateway.RingJSON, id string) error {
	if !c.Bool("wait") {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("wait-timeout"))
	defer cancel()
	urls := []string{base}
	scheme, _, _ := strings.Cut(base, "://")
	var printed, reached time.Time
	reached = time.Now()
	for {
		for _, m := range last.Members {
			if m.ID == id && m.State == "removed" {
				fmt.Fprintf(c.App.Writer, "%s removed at epoch %d\n", id, m.Since)
				return nil
			}
			if m.ID == id && m.State == "normal" && last.Change == nil {
				return cli.Exit(fmt.Sprintf("the change was abandoned: %s is normal again at epoch %d", id, last.Epoch), 1)
			}
			if m.HTTP != "" && m.ID != id && m.State == "normal" {
				urls = appendUnique(urls, scheme+"://"+m.HTTP)
			}
		}
		if time.Since(printed) >= 5*time.Second && last.Change != nil {
			printed = time.Now()
			printProgress(c, last)
		}
		select {
		case <-ctx.Done():
			return cli.Exit(fmt.Sprintf("%v after %v; follow it with `kvs ring`", errNotFinished, c.Duration("wait-timeout")), 1)
		case <-time.After(time.Second):
		}
		ring, err := firstRing(c, urls, secret)
		if err == nil {
			last, reached = ring, time.Now()
			continue
		}
		if time.Since(reached) > 10*time.Second {
			reached = time.Now()
			fmt.Fprintf(c.App.ErrWriter, "  no node answers /ring (%v); still waiting\n", err)
		}
	}
}

// firstRing returns the ring from the first of urls that answers.
func firstRing(c *cli.Context, urls []string, token string) (gateway.RingJSON, error) {
	var errs []error
	for _, u := range urls {
		ring, _, err := fetchRing(c, u, token)
		if err == nil {
			return ring, nil
		}
		errs = append(errs, err)
	}
	return gateway.RingJSON{}, errors.Join(errs...)
}

func printProgress(c *cli.Context, r gateway.RingJSON) {
	ch := r.Change
	var keys, bytes uint64
	for _, p := range ch.Progress {
		keys += p.Keys
		bytes += p.Bytes
	}
	fmt.Fprintf(c.App.Writer, "  %s of %s: %d of %d gainers streamed, %d keys (%s) so far\n",
		ch.Kind, ch.Node, len(ch.Streamed), len(ch.Gainers), keys, humanBytes(bytes))
}

func appendUnique(xs []string, x string) []string {
	for _, y := range xs {
		if y == x {
			return xs
		}
	}
	return append(xs, x)
}

func repairCommand() *cli.Command {
	return &cli.Command{
		Name:  "repair",
		Usage: "run anti-entropy now between the node at --url and every replica it shares ranges with, printing each round",
		Description: "Compares the hash trees of every shared range and moves only the keys of\n" +
			"differing segments, both ways. Exits 1 if a round failed.",
		Flags: adminFlags(30 * time.Minute),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("repair takes no arguments")
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			secret, err := adminSecret(c)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(c.Context, http.MethodPost, base+"/admin/repair", nil)
			if err != nil {
				return err
			}
			if secret != "" {
				req.Header.Set("Authorization", "Bearer "+secret)
			}
			resp, err := doRequest(c, req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return cli.Exit(responseError(resp).Error(), 1)
			}
			return printRepair(c.App.Writer, resp.Body)
		},
	}
}

// printRepair prints the lines of a repair as they arrive, and fails if a
// round failed or the stream ended before its totals.
func printRepair(w io.Writer, body io.Reader) error {
	dec := json.NewDecoder(body)
	failed := 0
	for {
		var l gateway.RepairLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				return cli.Exit("repair: the node stopped answering before it finished", 1)
			}
			return fmt.Errorf("repair: %w", err)
		}
		what := l.Peer
		if l.Done {
			what = "total"
		}
		fmt.Fprintf(w, "%s: %d ranges compared, %d differing (%d segments, %d keys listed), %d pushed, %d pulled, %s sent\n",
			what, l.Ranges, l.RangesDiffering, l.Segments, l.Keys, l.Pushed, l.Pulled, humanBytes(uint64(l.BytesSent)))
		if l.Error != "" && !l.Done {
			failed++
			fmt.Fprintf(w, "  %s: round failed: %s\n", l.Peer, l.Error)
		}
		if l.Done {
			if failed > 0 {
				return cli.Exit(fmt.Sprintf("repair: %d rounds failed", failed), 1)
			}
			return nil
		}
	}
}
