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
		Flags: append([]cli.Flag{
			urlFlag(),
			caFlag(),
			quorumFlag("w", "write"),
			timeoutFlag(30 * time.Second),
		}, tokenFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageError("put wants KEY and VALUE (or - for stdin), got %d arguments", c.NArg())
			}
			value := c.Args().Get(1)
			var body io.Reader = strings.NewReader(value)
			size := int64(len(value))
			if value == "-" {
				body, size = c.App.Reader, -1
			}
			resp, err := keyRequest(c, http.MethodPut, "w", body, size)
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
