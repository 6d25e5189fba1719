// Command kvs is the one binary of kvs, a Dynamo-style replicated key-value
// store: it runs a node (serve), a local cluster of nodes (dev), and talks to
// a running cluster (put, get, delete, status, ring, decommission,
// removenode, abort, repair, health, bench, nats-credentials).
//
// Every flag can also be set with an environment variable, KVS_ followed by
// the flag name in upper case with dashes as underscores: --cluster-secret
// is KVS_CLUSTER_SECRET, --url is KVS_URL. A flag on the command line wins.
//
// Quick start:
//
//	kvs dev --nodes 3                  # three nodes on HTTP 8081-8083
//	kvs put greeting hello             # through http://127.0.0.1:8081
//	kvs get greeting --url http://127.0.0.1:8082
//	kvs status
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default behaviour so that a
		// second Ctrl-C kills a shutdown that hangs.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(os.Stderr, err))
}

// exitCode reports err on stderr and returns the process exit code: 0 for
// nil, the code of a cli.ExitCoder, else 1.
func exitCode(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "kvs:", msg)
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// run runs the command line args (args[0] is the program name). Flags may
// follow the positional arguments, as in `kvs put KEY VALUE --url URL`.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	app := newApp(stdin, stdout, stderr)
	return app.RunContext(ctx, flagsFirst(app, args))
}

// flagsFirst moves the flags of a command (or subcommand) in front of its
// positional arguments, because urfave/cli v2 stops parsing flags at the first
// positional argument. The positional arguments follow a "--", so a key
// such as "-x" after an explicit "--" stays an argument. "-" (stdin) is an
// argument, not a flag.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	// A command with subcommands (kvs cert node ...): the flags are the
	// subcommand's, and go after its name.
	path := 2
	for cmd != nil && path < len(args) {
		sub := cmd.Command(args[path])
		if sub == nil {
			break
		}
		cmd, path = sub, path+1
	}
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	isBool := map[string]bool{"help": true, "h": true}
	for _, f := range cmd.Flags {
		if _, ok := f.(*cli.BoolFlag); ok {
			for _, name := range f.Names() {
				isBool[name] = true
			}
		}
	}
	var flags, positional []string
	rest := args[path:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && !isBool[name] && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		default:
			positional = append(positional, a)
		}
	}
	out := append(append([]string(nil), args[:path]...), flags...)
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}

// newApp builds the command-line application. Commands read from stdin and
// write to stdout and stderr, so tests can run them in process.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:  "kvs",
		Usage: "a Dynamo-style replicated key-value store",
		Description: "Every flag can also be set with an environment variable: KVS_ and the flag name\n" +
			"in upper case with dashes as underscores (--cluster-secret: KVS_CLUSTER_SECRET).",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		// Errors are returned to main, which prints them and exits; the
		// default handler would call os.Exit inside the library.
		ExitErrHandler:       func(*cli.Context, error) {},
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			serveCommand(),
			devCommand(),
			putCommand(),
			getCommand(),
			deleteCommand(),
			statusCommand(),
			ringCommand(),
			decommissionCommand(),
			removenodeCommand(),
			abortCommand(),
			repairCommand(),
			healthCommand(),
			benchCommand(),
			natsCredentialsCommand(),
			certCommand(),
		},
	}
}

// envVars returns the environment variable of a flag: KVS_ and the flag
// name in upper case, dashes turned into underscores.
func envVars(flag string) []string {
	return []string{"KVS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// usageError is a command-line mistake: exit code 2, like flag errors.
func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 2)
}
