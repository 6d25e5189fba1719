package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

func healthCommand() *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "exit 0 if the node is ready (/readyz answers 200), else 1",
		Description: "For container health checks: needs no shell and no other tool. Without\n" +
			"--url or KVS_URL it checks 127.0.0.1 on the port of KVS_HTTP when that is set\n" +
			"(the serve address of the same container), else " + defaultURL + ". When\n" +
			"KVS_TLS_CERT is set too (the container's node serves HTTPS), that is an https://\n" +
			"URL, and without --ca or KVS_CA it trusts the CA of KVS_TLS_CA; the certificate\n" +
			"must then name 127.0.0.1.\n" +
			"It sends no token: /readyz answers anyone, also on a node with client tokens.",
		Flags: []cli.Flag{
			urlFlag(),
			caFlag(),
			timeoutFlag(3 * time.Second),
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing", EnvVars: envVars("quiet")},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("health takes no arguments")
			}
			base, err := baseURL(c)
			if err != nil {
				return err
			}
			ca := c.String("ca")
			if !c.IsSet("url") {
				if u, ok := urlFromServeAddr(os.Getenv("KVS_HTTP"), os.Getenv("KVS_TLS_CERT") != ""); ok {
					base = u
					if ca == "" && strings.HasPrefix(u, "https://") {
						ca = os.Getenv("KVS_TLS_CA")
					}
				}
			}
			req, err := http.NewRequestWithContext(c.Context, http.MethodGet, base+"/readyz", nil)
			if err != nil {
				return err
			}
			client, err := httpClientWithCA(c.Duration("timeout"), ca)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				if c.Bool("quiet") {
					return cli.Exit("", 1)
				}
				return cli.Exit(err.Error(), 1)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				if c.Bool("quiet") {
					return cli.Exit("", 1)
				}
				return cli.Exit(responseError(resp).Error(), 1)
			}
			if !c.Bool("quiet") {
				fmt.Fprintln(c.App.Writer, "ready")
			}
			return nil
		},
	}
}

// urlFromServeAddr turns a serve listen address (":8080", "0.0.0.0:8081",
// "10.0.0.5:8080") into a URL a process on the same machine can use: https
// when the node serves TLS.
func urlFromServeAddr(addr string, tls bool) (string, bool) {
	if addr == "" {
		return "", false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port), true
}
