package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store a value under a key",
		ArgsUsage: "KEY VALUE|-",
		Description: "Stores VALUE under KEY, or the whole of stdin when VALUE is \"-\".\n" +
			"Prints the version the write got. The key may hold any characters; it is\n" +
			"percent-encoded in the URL.",
		Flags: []cli.Flag{
			urlFlag(),
			&cli.IntFlag{Name: "w", Usage: "write quorum for this request, 1 to N (0: the node's default)", EnvVars: envVars("w")},
			timeoutFlag(30 * time.Second),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError("put wants KEY and VALUE (or - for stdin), got %d arguments", c.NArg())
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			w, err := checkQuorumFlag(c, "w")
			if err != nil {
				return err
			}
			key, value := c.Args().Get(0), c.Args().Get(1)
			var body io.Reader = strings.NewReader(value)
			if value == "-" {
				body = c.App.Reader
			}
			req, err := http.NewRequestWithContext(c.Context, http.MethodPut, keyURL(base, key, "w", w), body)
			if err != nil {
				return err
			}
			if value != "-" {
				req.ContentLength = int64(len(value))
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
