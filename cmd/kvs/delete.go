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
		Flags: append([]cli.Flag{
			urlFlag(),
			caFlag(),
			quorumFlag("w", "write"),
			timeoutFlag(30 * time.Second),
		}, tokenFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("delete wants KEY, got %d arguments", c.NArg())
			}
			resp, err := keyRequest(c, http.MethodDelete, "w", nil, -1)
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
