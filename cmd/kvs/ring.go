package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/gateway"
)

func ringCommand() *cli.Command {
	return &cli.Command{
		Name:  "ring",
		Usage: "show the topology: members with state and epoch, ownership, the pending change and its streaming progress",
		Flags: append([]cli.Flag{
			urlFlag(),
			caFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json", EnvVars: envVars("output")},
			timeoutFlag(10 * time.Second),
		}, tokenFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("ring takes no arguments")
			}
			out := c.String("output")
			if out != "text" && out != "json" {
				return usageError("--output %q: want text or json", out)
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			token, err := clientToken(c)
			if err != nil {
				return err
			}
			ring, raw, err := fetchRing(c, base, token)
			if err != nil {
				return err
			}
			if out == "json" {
				_, err := c.App.Writer.Write(raw)
				return err
			}
			return printRing(c.App.Writer, ring, time.Now())
		},
	}
}

// fetchRing GETs base/ring, with token as bearer token when it is not
// empty (a node with --protect-cluster-info needs one), and decodes it; raw
// is the body as served.
func fetchRing(c *cli.Context, base, token string) (gateway.RingJSON, []byte, error) {
	var ring gateway.RingJSON
	req, err := http.NewRequestWithContext(c.Context, http.MethodGet, base+"/ring", nil)
	if err != nil {
		return ring, nil, err
	}
	setBearer(req, token)
	resp, err := doRequest(c, req)
	if err != nil {
		return ring, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ring, nil, responseError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return ring, nil, err
	}
	if err := json.Unmarshal(raw, &ring); err != nil {
		return ring, nil, fmt.Errorf("decoding /ring: %w", err)
	}
	return ring, raw, nil
}

// printRing writes the ring as a header, a member table and the pending
// change.
func printRing(w io.Writer, r gateway.RingJSON, now time.Time) error {
	fmt.Fprintf(w, "cluster %s at epoch %d (store revision %d), seen from %s; N=%d, %d vnodes\n\n",
		r.ClusterID, r.Epoch, r.Revision, r.Self, r.N, r.VNodes)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tSINCE\tALIVE\tEPOCH\tOWNS\tREPLICATES\tHTTP")
	for _, m := range r.Members {
		alive, epoch := "yes", fmt.Sprint(m.Epoch)
		if !m.Alive {
			alive = "NO"
		}
		if m.State == "removed" {
			alive, epoch = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%.1f%%\t%.1f%%\t%s\n", m.ID, m.State, m.Since, alive, epoch,
			100*m.Ownership, 100*m.Replicated, orDash(m.HTTP))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	c := r.Change
	if c == nil {
		_, err := fmt.Fprintln(w, "\nno change pending")
		return err
	}
	fmt.Fprintf(w, "\npending: %s of %s, begun at epoch %d; gainers streamed %d of %d\n",
		c.Kind, c.Node, c.Epoch, len(c.Streamed), len(c.Gainers))
	var ts []string
	for _, t := range c.Transfers {
		ts = append(ts, fmt.Sprintf("%s <- %s %.1f%%", t.Gainer, t.Loser, 100*t.Share))
	}
	fmt.Fprintf(w, "  transfers: %s\n", strings.Join(ts, ", "))
	for _, g := range c.Gainers {
		line := "  " + g + ": "
		switch p := progressOf(c.Progress, g); {
		case contains(c.Streamed, g):
			line += "streamed"
		case p == nil:
			line += "not started"
		default:
			line += fmt.Sprintf("%d of %d streams done, %d keys, %s, updated %s ago",
				p.Done, p.Transfers, p.Keys, humanBytes(p.Bytes), now.Sub(p.Updated).Round(time.Second))
		}
		if contains(c.Streamed, g) {
			if p := progressOf(c.Progress, g); p != nil {
				line += fmt.Sprintf(" (%d keys, %s)", p.Keys, humanBytes(p.Bytes))
			}
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

func progressOf(ps []gateway.ProgressJSON, node string) *gateway.ProgressJSON {
	for i := range ps {
		if ps[i].Node == node {
			return &ps[i]
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func humanBytes(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// errNotFinished is returned by a topology command's --wait when its
// timeout passes first.
var errNotFinished = errors.New("the change has not finished")
