package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// defaultURL is the node the client commands talk to: node1 of `kvs dev`.
const defaultURL = "http://127.0.0.1:8081"

// urlFlag and timeoutFlag are shared by the client commands.
func urlFlag() cli.Flag {
	return &cli.StringFlag{Name: "url", Value: defaultURL, Usage: "base URL of a kvs node", EnvVars: envVars("url")}
}

func timeoutFlag(d time.Duration) cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: d, Usage: "timeout of the whole request", EnvVars: envVars("timeout")}
}

// baseURL parses the --url flag: an http or https URL with a host and no
// query; a trailing slash is dropped.
func baseURL(c *cli.Context) (string, error) {
	raw := c.String("url")
	u, err := url.Parse(raw)
	if err != nil {
		return "", usageError("--url %q: %v", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", usageError("--url %q: want http://host:port", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// escapeKey percent-encodes a key for the /kv/{key} path: every byte but
// ASCII letters, digits and "-_.~" is escaped, and so are the dots of a key
// made only of dots, so that no proxy or client mistakes it for "." or "..".
func escapeKey(key string) string {
	const hex = "0123456789ABCDEF"
	allDots := strings.Trim(key, ".") == ""
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '~', c == '.' && !allDots:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// keyURL is the URL of key on the node at base, with an optional quorum
// parameter (name=value, when value > 0).
func keyURL(base, key, name string, value int) string {
	u := base + "/kv/" + escapeKey(key)
	if value > 0 {
		u += fmt.Sprintf("?%s=%d", name, value)
	}
	return u
}

// responseError turns a non-2xx response into an error carrying the
// server's {"error": ...} message (or the start of its body).
func responseError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var eb struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return fmt.Errorf("%s: %s", resp.Status, msg)
}

// checkQuorumFlag refuses a negative --w or --r.
func checkQuorumFlag(c *cli.Context, name string) (int, error) {
	v := c.Int(name)
	if v < 0 {
		return 0, usageError("--%s %d: want 1 to N, or 0 for the node's default", name, v)
	}
	return v, nil
}

// quorumFlag is the --w or --r flag of a client command.
func quorumFlag(name, what string) cli.Flag {
	return &cli.IntFlag{Name: name, Usage: what + " quorum for this request, 1 to N (0: the node's default)", EnvVars: envVars(name)}
}

// keyRequest sends method for the command's KEY argument to --url, with the
// quorum flag quorum (w or r) in the query and the token of --token or
// --token-file, and returns the response. The caller closes its body.
func keyRequest(c *cli.Context, method, quorum string, body io.Reader, size int64) (*http.Response, error) {
	base, err := baseURL(c)
	if err != nil {
		return nil, err
	}
	q, err := checkQuorumFlag(c, quorum)
	if err != nil {
		return nil, err
	}
	token, err := clientToken(c)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(c.Context, method, keyURL(base, c.Args().Get(0), quorum, q), body)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	setBearer(req, token)
	return doRequest(c, req)
}

// decodeJSON decodes a JSON response body (at most 16 MiB) into v.
func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}
