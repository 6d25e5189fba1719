package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvs-db/kvs/bus"
)

// The NATS password flags of serve: a file's password goes to the bus,
// and every mistake is refused naming the flag and the file, never the
// password.
func TestServeNATSPasswordFlags(t *testing.T) {
	got := stubServe(t)

	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const (
		secret = "cluster-secret-0123456789"
		watch  = "watch-password-0123456789"
		sys    = "sys-password-0123456789"
	)
	watchFile, sysFile := file("watch", watch+"\n"), file("sys", sys+"\r\n")
	short := file("short", "short\n")
	bcrypt := file("bcrypt", "$2a$10$abcdefghijklmnopqrstuv\n")
	control := file("control", "watch-password\x00-0123456789\n")
	lines := file("lines", watch+"\n"+sys+"\n")
	space := file("space", " "+watch+"\n")
	theSecret := file("secret", secret+"\n")
	derivedSys := file("derived-sys", bus.DerivePassword(secret, bus.SystemUser)+"\n")
	withSecret := []string{"--cluster-secret", secret}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantErr  string // in stderr; none means a start with want
		want     natsPasswords
		wantNoPw string // a password that must not show in stderr
	}{
		{name: "derived", args: withSecret},
		{name: "no secret", args: nil},
		{name: "files", args: append([]string{"--watch-password-file", watchFile, "--sys-password-file", sysFile}, withSecret...),
			want: natsPasswords{watch: watch, sys: sys}},
		{name: "env", env: map[string]string{"KVS_WATCH_PASSWORD_FILE": watchFile, "KVS_CLUSTER_SECRET": secret},
			want: natsPasswords{watch: watch}},
		{name: "sys alone", args: append([]string{"--sys-password-file", sysFile}, withSecret...),
			want: natsPasswords{sys: sys}},
		{name: "missing file", args: append([]string{"--watch-password-file", filepath.Join(dir, "nope")}, withSecret...),
			wantErr: "--watch-password-file: open " + filepath.Join(dir, "nope") + ": no such file"},
		{name: "empty file", args: append([]string{"--sys-password-file", file("empty", "\n")}, withSecret...),
			wantErr: "--sys-password-file " + filepath.Join(dir, "empty") + ": empty"},
		{name: "too short", args: append([]string{"--watch-password-file", short}, withSecret...),
			wantErr: "the watch password (--watch-password-file " + short + ") is 5 bytes; it must be at least 16", wantNoPw: "short\n"},
		{name: "bcrypt", args: append([]string{"--sys-password-file", bcrypt}, withSecret...),
			wantErr: "the sys password (--sys-password-file " + bcrypt + "): it begins with \"$2a$\", and nats-server takes", wantNoPw: "abcdefghijklmnop"},
		{name: "control character", args: append([]string{"--watch-password-file", control}, withSecret...),
			wantErr: "(--watch-password-file " + control + ") contains a control character", wantNoPw: "0123456789"},
		{name: "two lines", args: append([]string{"--watch-password-file", lines}, withSecret...),
			wantErr: "(--watch-password-file " + lines + ") contains a control character", wantNoPw: sys},
		{name: "outer space", args: append([]string{"--watch-password-file", space}, withSecret...),
			wantErr: "(--watch-password-file " + space + ") begins or ends with whitespace", wantNoPw: watch},
		{name: "without secret", args: []string{"--watch-password-file", watchFile},
			wantErr: "--watch-password-file needs a cluster secret", wantNoPw: watch},
		{name: "sys without secret", env: map[string]string{"KVS_SYS_PASSWORD_FILE": sysFile},
			wantErr: "--sys-password-file needs a cluster secret", wantNoPw: sys},
		{name: "the secret", args: append([]string{"--sys-password-file", theSecret}, withSecret...),
			wantErr: "--sys-password-file " + theSecret + " holds the cluster secret", wantNoPw: secret},
		{name: "the same", args: append([]string{"--watch-password-file", watchFile, "--sys-password-file", watchFile}, withSecret...),
			wantErr: "the watch and sys passwords are the same", wantNoPw: watch},
		{name: "sys's derived", args: append([]string{"--watch-password-file", derivedSys}, withSecret...),
			wantErr: "the watch and sys passwords are the same"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearKVSEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			*got = serveOptions{}
			_, stderr, code := runCLI(t, "", append([]string{"serve"}, tt.args...)...)
			if tt.wantErr != "" {
				if code != 2 || !strings.Contains(stderr, tt.wantErr) {
					t.Errorf("exit code %d, stderr %q; want 2 and %q", code, stderr, tt.wantErr)
				}
				if tt.wantNoPw != "" && strings.Contains(stderr, tt.wantNoPw) {
					t.Errorf("stderr %q shows the password", stderr)
				}
				return
			}
			if code != 0 {
				t.Fatalf("exit code %d, stderr %q", code, stderr)
			}
			if got.natsUsers != tt.want {
				t.Errorf("NATS passwords %+v, want %+v", got.natsUsers, tt.want)
			}
		})
	}
}

func TestNATSCredentialsCommand(t *testing.T) {
	clearKVSEnv(t)
	const secret = "change-me-kvs-dev-secret"
	// bus.TestDerivePassword holds how these are computed.
	const watch, sys = "R6663VVaEz4zJA16vIcUr00uFWqh-manTMnRruRcIuk", "UW3lC6CXdpAz5QWucIcEMJjx1ZxBD0U4RuXLORlU12Q"
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	given := filepath.Join(dir, "watch")
	for path, content := range map[string]string{secretFile: secret + "\n", given: "given:watch/pass@word\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	out, errOut, code := runCLI(t, "", "nats-credentials", "--cluster-secret-file", secretFile)
	if code != 0 {
		t.Fatalf("nats-credentials: code %d stderr %q", code, errOut)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "USER") ||
		!strings.HasPrefix(rows[1], "watch  "+watch+"  subscribe to heartbeats") ||
		!strings.HasPrefix(rows[2], "sys    "+sys+"  the system account") {
		t.Errorf("nats-credentials table:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the table shows the cluster secret:\n%s", out)
	}

	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"watch", "--cluster-secret", secret}, nil, watch + "\n"},
		{[]string{"sys", "--output", "password"}, map[string]string{"KVS_CLUSTER_SECRET_FILE": secretFile}, sys + "\n"},
		{[]string{"watch", "--output", "url", "--cluster-secret", secret}, nil, "nats://watch:" + watch + "@127.0.0.1:4222\n"},
		{[]string{"sys", "--output", "url", "--server", "nats://node1:4223", "--cluster-secret", secret}, nil, "nats://sys:" + sys + "@node1:4223\n"},
		{[]string{"watch", "--output", "url", "--server", "[::1]:4222", "--cluster-secret", secret}, nil, "nats://watch:" + watch + "@[::1]:4222\n"},
		// A given password is printed as given, escaped in a URL.
		{[]string{"watch", "--watch-password-file", given, "--cluster-secret", secret}, nil, "given:watch/pass@word\n"},
		{[]string{"watch", "--output", "url", "--cluster-secret", secret}, map[string]string{"KVS_WATCH_PASSWORD_FILE": given},
			"nats://watch:given%3Awatch%2Fpass%40word@127.0.0.1:4222\n"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			clearKVSEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, code := runCLI(t, "", append([]string{"nats-credentials"}, tt.args...)...)
			if code != 0 || out != tt.want {
				t.Errorf("code %d stdout %q stderr %q, want %q", code, out, errOut, tt.want)
			}
		})
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "no cluster secret"},
		{[]string{"watch"}, "no cluster secret"},
		{[]string{"kvs", "--cluster-secret", secret}, `no NATS user "kvs"`},
		{[]string{"route", "--cluster-secret", secret}, `no NATS user "route"`},
		{[]string{"watch", "sys", "--cluster-secret", secret}, "at most one user"},
		{[]string{"--output", "url", "--cluster-secret", secret}, "--output needs a user"},
		{[]string{"watch", "--output", "json", "--cluster-secret", secret}, `--output "json": want password or url`},
		{[]string{"watch", "--output", "url", "--server", "nats://u:p@host:4222", "--cluster-secret", secret}, "--server"},
		{[]string{"watch", "--output", "url", "--server", "host", "--cluster-secret", secret}, "--server"},
		{[]string{"watch", "--cluster-secret", secret, "--cluster-secret-file", secretFile}, "give one"},
		{[]string{"watch", "--cluster-secret", secret, "--sys-password-file", filepath.Join(dir, "nope")}, "--sys-password-file: open"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, "", append([]string{"nats-credentials"}, tt.args...)...)
			if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("code %d stdout %q stderr %q, want 2, nothing printed and %q", code, out, errOut, tt.want)
			}
		})
	}
}
