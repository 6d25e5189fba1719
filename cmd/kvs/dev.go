package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a local cluster of separate `kvs serve` processes",
		Description: "Starts --nodes processes of this binary on 127.0.0.1: HTTP on --base-http and\n" +
			"up, NATS clients on --base-nats and up, routes on --base-cluster and up, each\n" +
			"seeded with the others. Their logs are shown prefixed with the node ID. Ctrl-C\n" +
			"or SIGTERM stops them all. Data goes to --data, or a new temporary directory;\n" +
			"either way its path is printed. With --tls-cert, --tls-key and --tls-ca every\n" +
			"node serves TLS with that one certificate, which must then name 127.0.0.1.",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of nodes (1 to 9)", EnvVars: envVars("nodes")},
			&cli.StringFlag{Name: "data", Usage: "data directory (one subdirectory per node; default: a new temporary directory)", EnvVars: envVars("data")},
			&cli.IntFlag{Name: "base-http", Value: 8081, Usage: "HTTP port of node1", EnvVars: envVars("base-http")},
			&cli.IntFlag{Name: "base-nats", Value: 4222, Usage: "NATS client port of node1", EnvVars: envVars("base-nats")},
			&cli.IntFlag{Name: "base-cluster", Value: 6222, Usage: "NATS cluster port of node1", EnvVars: envVars("base-cluster")},
			&cli.IntFlag{Name: "base-pprof", Usage: "pprof port of node1 (kvs serve --pprof on 127.0.0.1, this and up); 0: off", EnvVars: envVars("base-pprof")},
			&cli.StringFlag{Name: "cluster", Value: "kvs", Usage: "cluster name", EnvVars: envVars("cluster")},
			&cli.StringFlag{Name: "sync", Value: "always", Usage: "WAL fsync policy of every node", EnvVars: envVars("sync")},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level of every node", EnvVars: envVars("log-level")},
		}, append(secretFlags("cluster secret (at least 16 bytes) passed to every node"), serveTLSFlags()...)...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("dev takes no arguments")
			}
			secret, err := nodeSecret(c)
			if err != nil {
				return usageError("%v", err)
			}
			tlsFiles, err := parseServeTLS(c)
			if err != nil {
				return usageError("%v", err)
			}
			o := devOptions{
				nodes:       c.Int("nodes"),
				dataDir:     c.String("data"),
				baseHTTP:    c.Int("base-http"),
				baseNATS:    c.Int("base-nats"),
				baseCluster: c.Int("base-cluster"),
				basePprof:   c.Int("base-pprof"),
				cluster:     c.String("cluster"),
				secret:      secret,
				tls:         tlsFiles,
				sync:        c.String("sync"),
				logLevel:    c.String("log-level"),
			}
			if err := o.validate(); err != nil {
				return usageError("%v", err)
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this binary: %w", err)
			}
			return runDev(c.Context, exe, o, c.App.Writer)
		},
	}
}

// devOptions is the validated command line of `kvs dev`.
type devOptions struct {
	nodes                           int
	dataDir                         string
	baseHTTP, baseNATS, baseCluster int
	basePprof                       int // 0: no pprof listeners
	cluster, secret, sync, logLevel string
	tls                             *serveTLS // checked here, passed to every node by file name; nil: plaintext
}

func (o *devOptions) validate() error {
	if o.nodes < 1 || o.nodes > 9 {
		return fmt.Errorf("--nodes %d: want 1 to 9", o.nodes)
	}
	for name, base := range map[string]int{"--base-http": o.baseHTTP, "--base-nats": o.baseNATS, "--base-cluster": o.baseCluster} {
		if base < 1 || base+o.nodes-1 > 65535 {
			return fmt.Errorf("%s %d: ports %d to %d are not all valid", name, base, base, base+o.nodes-1)
		}
	}
	if o.basePprof < 0 || o.basePprof > 0 && o.basePprof+o.nodes-1 > 65535 {
		return fmt.Errorf("--base-pprof %d: ports %d to %d are not all valid", o.basePprof, o.basePprof, o.basePprof+o.nodes-1)
	}
	ranges := [][2]int{{o.baseHTTP, o.baseHTTP + o.nodes}, {o.baseNATS, o.baseNATS + o.nodes}, {o.baseCluster, o.baseCluster + o.nodes}}
	if o.basePprof > 0 {
		ranges = append(ranges, [2]int{o.basePprof, o.basePprof + o.nodes})
	}
	for i := range ranges {
		for j := i + 1; j < len(ranges); j++ {
			if ranges[i][0] < ranges[j][1] && ranges[j][0] < ranges[i][1] {
				return errors.New("the HTTP, NATS, cluster and pprof port ranges overlap")
			}
		}
	}
	return nil
}

// serveArgs returns the `kvs serve` arguments of node i (1-based).
func (o *devOptions) serveArgs(i int) []string {
	const host = "127.0.0.1"
	var seeds []string
	for j := 1; j <= o.nodes; j++ {
		if j != i {
			seeds = append(seeds, net.JoinHostPort(host, strconv.Itoa(o.baseCluster+j-1)))
		}
	}
	args := []string{
		"serve",
		"--id", "node" + strconv.Itoa(i),
		"--http", net.JoinHostPort(host, strconv.Itoa(o.baseHTTP+i-1)),
		"--data", filepath.Join(o.dataDir, "node"+strconv.Itoa(i)),
		"--nats-host", host,
		"--nats-port", strconv.Itoa(o.baseNATS + i - 1),
		"--cluster-port", strconv.Itoa(o.baseCluster + i - 1),
		"--advertise", net.JoinHostPort(host, strconv.Itoa(o.baseCluster+i-1)),
		"--seeds", strings.Join(seeds, ","),
		"--cluster", o.cluster,
		"--sync", o.sync,
		"--log-level", o.logLevel,
	}
	if o.basePprof > 0 {
		args = append(args, "--pprof", net.JoinHostPort(host, strconv.Itoa(o.basePprof+i-1)))
	}
	if o.tls != nil {
		args = append(args, "--tls-cert", o.tls.certFile, "--tls-key", o.tls.keyFile, "--tls-ca", o.tls.caFile)
	}
	return args
}

// devEnv is the environment of the nodes: base without the secret
// variables, then the secret in KVS_CLUSTER_SECRET when there is one. The
// secret goes through the environment, not the command line, where any
// user could read it with ps; and base may name a secret file, which next
// to KVS_CLUSTER_SECRET would make serve refuse to start.
func devEnv(base []string, secret string) []string {
	env := make([]string, 0, len(base)+1)
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if name != "KVS_CLUSTER_SECRET" && name != "KVS_CLUSTER_SECRET_FILE" {
			env = append(env, kv)
		}
	}
	if secret != "" {
		env = append(env, "KVS_CLUSTER_SECRET="+secret)
	}
	return env
}

// devChild is one running `kvs serve` process.
type devChild struct {
	id   string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, set before done is closed
}

// runDev starts the nodes, forwards their output to out with a prefix per
// node, and stops them all when ctx ends.
func runDev(ctx context.Context, exe string, o devOptions, out io.Writer) error {
	if o.dataDir == "" {
		dir, err := os.MkdirTemp("", "kvs-dev-")
		if err != nil {
			return err
		}
		o.dataDir = dir
	}
	abs, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	o.dataDir = abs
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return err
	}

	var mu sync.Mutex // serializes lines on out
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "kvs dev | "+format+"\n", args...)
	}
	say("starting %d nodes, data in %s", o.nodes, o.dataDir)

	httpScheme, natsScheme := "http", "nats"
	if o.tls != nil {
		httpScheme, natsScheme = "https", "tls"
	}
	env := devEnv(os.Environ(), o.secret)
	var children []*devChild
	exited := make(chan *devChild, o.nodes)
	for i := 1; i <= o.nodes; i++ {
		ch := &devChild{id: "node" + strconv.Itoa(i), done: make(chan struct{})}
		ch.cmd = exec.Command(exe, o.serveArgs(i)...)
		ch.cmd.Env = env
		detach(ch.cmd)
		pr, pw := io.Pipe()
		ch.cmd.Stdout, ch.cmd.Stderr = pw, pw
		if err := ch.cmd.Start(); err != nil {
			pw.Close()
			say("starting %s: %v", ch.id, err)
			stopChildren(children, say)
			return err
		}
		go prefixLines(pr, ch.id, out, &mu)
		go func() {
			ch.err = ch.cmd.Wait()
			pw.Close()
			close(ch.done)
			exited <- ch
		}()
		children = append(children, ch)
		say("%s: pid %d, %s://127.0.0.1:%d, NATS %s://127.0.0.1:%d", ch.id, ch.cmd.Process.Pid, httpScheme, o.baseHTTP+i-1, natsScheme, o.baseNATS+i-1)
	}
	if o.tls != nil {
		say("try: kvs put hello world --url https://127.0.0.1:%d --ca %s; kvs get hello --url https://127.0.0.1:%d --ca %s",
			o.baseHTTP, o.tls.caFile, o.baseHTTP+min(1, o.nodes-1), o.tls.caFile)
	} else {
		say("try: kvs put hello world; kvs get hello --url http://127.0.0.1:%d; kvs status", o.baseHTTP+min(1, o.nodes-1))
	}
	say("Ctrl-C stops all nodes")

	running := len(children)
	for running > 0 {
		select {
		case <-ctx.Done():
			say("stopping all nodes")
			stopChildren(children, say)
			say("all nodes stopped; data kept in %s", o.dataDir)
			return nil
		case ch := <-exited:
			running--
			say("%s exited: %v (%d of %d nodes still running)", ch.id, exitStatus(ch.err), running, len(children))
		}
	}
	return fmt.Errorf("all %d nodes exited; data in %s", len(children), o.dataDir)
}

// exitStatus describes a process's exit error.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// stopChildren sends SIGTERM to every running child, waits up to 15 s for
// them to exit, then kills the rest.
func stopChildren(children []*devChild, say func(string, ...any)) {
	for _, ch := range children {
		select {
		case <-ch.done:
		default:
			_ = ch.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(15 * time.Second)
	for _, ch := range children {
		select {
		case <-ch.done:
		case <-deadline:
			say("%s did not stop in time; killing it", ch.id)
			_ = ch.cmd.Process.Kill()
			<-ch.done
		}
	}
}

// prefixLines copies r to out line by line, each line prefixed with
// "id | ", holding mu while writing a piece. It reads r to its end, so the
// child never blocks on a full pipe.
func prefixLines(r io.Reader, id string, out io.Writer, mu *sync.Mutex) {
	br := bufio.NewReaderSize(r, 64<<10)
	prefix := []byte(fmt.Sprintf("%-5s | ", id))
	atStart := true
	for {
		piece, err := br.ReadSlice('\n')
		if len(piece) > 0 {
			mu.Lock()
			if atStart {
				_, _ = out.Write(prefix)
			}
			_, _ = out.Write(piece)
			atStart = piece[len(piece)-1] == '\n'
			if !atStart && err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				_, _ = out.Write([]byte{'\n'})
			}
			mu.Unlock()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			_, _ = io.Copy(io.Discard, r)
			return
		}
	}
}
