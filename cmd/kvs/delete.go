package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"
)

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a key (writes a tombstone)",
		ArgsUsage: "KEY",
		Flags: []cli.Flag{
			urlFlag(),
			&cli.IntFlag{Name: "w", Usage: "write quorum for this request, 1 to N (0: the node's default)", EnvVars: envVars("w")},
			timeoutFlag(30 * time.Second),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("delete wants KEY, got %d arguments", c.NArg())
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			w, err := checkQuorumFlag(c, "w")
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(c.Context, http.MethodDelete, keyURL(base, c.Args().Get(0), "w", w), nil)
			if err != nil {
				return err
			}
			resp, err := newHTTPClient(c.Duration("timeout")).Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return responseError(resp)
			}
			fmt.Fprintf(c.App.Writer, "version %s\n", resp.Header.Get("X-Kvs-Version"))
			return nil
		},
	}
}
