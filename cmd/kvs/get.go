package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"
)

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print the value of a key",
		ArgsUsage: "KEY",
		Description: "Writes the value of KEY to stdout as it is (no newline added). Exits 1\n" +
			"with \"not found\" when the key is missing or deleted.",
		Flags: append([]cli.Flag{
			urlFlag(),
			caFlag(),
			quorumFlag("r", "read"),
			&cli.BoolFlag{Name: "show-version", Usage: "print the value's version on stderr", EnvVars: envVars("show-version")},
			timeoutFlag(30 * time.Second),
		}, tokenFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("get wants KEY, got %d arguments", c.NArg())
			}
			resp, err := keyRequest(c, http.MethodGet, "r", nil, -1)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusNotFound:
				return cli.Exit("not found", 1)
			case resp.StatusCode/100 != 2:
				return responseError(resp)
			}
			if c.Bool("show-version") {
				fmt.Fprintf(c.App.ErrWriter, "version %s\n", resp.Header.Get("X-Kvs-Version"))
			}
			_, err = io.Copy(c.App.Writer, resp.Body)
			return err
		},
	}
}
