package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kvs-db/kvs/gateway"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the cluster as one node sees it: members, liveness, ownership, hints",
		Flags: append([]cli.Flag{
			urlFlag(),
			caFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print the node's /cluster JSON as it is", EnvVars: envVars("json")},
			timeoutFlag(10 * time.Second),
		}, tokenFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("status takes no arguments")
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			token, err := clientToken(c)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(c.Context, http.MethodGet, base+"/cluster", nil)
			if err != nil {
				return err
			}
			setBearer(req, token)
			resp, err := doRequest(c, req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return responseError(resp)
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				_, err := c.App.Writer.Write(body)
				return err
			}
			var st gateway.ClusterJSON
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("decoding /cluster: %w", err)
			}
			return printStatus(c.App.Writer, st, time.Now())
		},
	}
}

// printStatus writes st as a header line and a table of members.
func printStatus(w io.Writer, st gateway.ClusterJSON, now time.Time) error {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "cluster %s at epoch %d, seen from %s (%s), N=%d W=%d R=%d\n\n", st.Cluster, st.Epoch, st.Self, ready, st.N, st.W, st.R)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tHTTP\tALIVE\tOWNERSHIP\tHINTS PENDING\tLAST SEEN")
	for _, m := range st.Members {
		alive := "yes"
		if !m.Alive {
			alive = "NO"
		}
		seen := "never"
		if m.LastSeen != nil {
			seen = now.Sub(*m.LastSeen).Round(100*time.Millisecond).String() + " ago"
			if m.ID == st.Self {
				seen = "-"
			}
		}
		httpAddr := m.HTTPAddr
		if httpAddr == "" {
			httpAddr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f%%\t%d\t%s\n", m.ID, stateCode(m), httpAddr, alive, 100*m.Ownership, m.HintsPending, seen)
	}
	return tw.Flush()
}

// stateCode is a member's state as Cassandra's nodetool status shows it:
// U or D (up, down) then N, J or L (normal, joining, leaving).
func stateCode(m gateway.MemberJSON) string {
	code := "D"
	if m.Alive {
		code = "U"
	}
	switch m.State {
	case "joining":
		code += "J"
	case "leaving":
		code += "L"
	default:
		code += "N"
	}
	return code + " " + m.State
}
