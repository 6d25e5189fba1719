package topology

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden replays the command sequences of testdata/*.txt. A line
// "> cmd args" applies a command (or "show" prints the topology); the lines
// after it, up to a blank line, are what it must print: the error, or the
// topology with its members, pending change and transfers. Run with
// -update to rewrite the expected output after a deliberate change, and
// read the diff.
func TestGolden(t *testing.T) {
	for _, name := range []string{"join", "leave", "remove", "refusals", "small"} {
		t.Run(name, func(t *testing.T) { runGolden(t, "testdata/"+name+".txt") })
	}
}

func runGolden(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	var topo Topology
	sc := bufio.NewScanner(f)
	var cmd string
	var want []string
	line, cmdLine := 0, 0
	flush := func() {
		if cmd == "" {
			return
		}
		got := golden(t, &topo, cmd)
		fmt.Fprintf(&out, "> %s\n%s\n", cmd, got)
		if !*update && strings.TrimSpace(got) != strings.TrimSpace(strings.Join(want, "\n")) {
			t.Errorf("%s:%d: > %s\ngot:\n%s\nwant:\n%s", path, cmdLine, cmd, got, strings.Join(want, "\n"))
		}
		cmd, want = "", nil
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, "> "):
			flush()
			cmd, cmdLine = strings.TrimPrefix(text, "> "), line
		case cmd != "" && strings.TrimSpace(text) != "":
			want = append(want, text)
		case cmd == "":
			out.WriteString(text + "\n") // comments and blank lines between cases
		}
	}
	flush()
	if *update {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// golden runs one command line against topo and renders the outcome.
func golden(t *testing.T, topo *Topology, line string) string {
	f := strings.Fields(line)
	var c Command
	switch f[0] {
	case "show":
		return render(topo)
	case "bootstrap":
		c = Command{Op: OpBootstrap, ClusterID: "c1", N: 3, VNodes: 8}
		for _, id := range f[1:] {
			c.Members = append(c.Members, Member{ID: id})
		}
	case "join", "leave", "remove", "streamed":
		c = Command{Op: Op(f[0]), Node: f[1]}
	case "abort":
		c = Command{Op: OpAbort}
	default:
		t.Fatalf("unknown golden command %q", line)
	}
	next, err := Apply(*topo, c)
	if err != nil {
		return "error: " + err.Error()
	}
	*topo = next
	return render(topo)
}

func render(t *Topology) string {
	var b strings.Builder
	fmt.Fprintf(&b, "epoch %d:", t.Epoch)
	for _, m := range t.Members {
		fmt.Fprintf(&b, " %s=%s@%d", m.ID, m.State, m.Since)
	}
	if c := t.Change; c != nil {
		fmt.Fprintf(&b, "\n%s %s begun at %d, gainers %v, streamed %v", c.Kind, c.Node, c.Epoch, c.Gainers, c.Streamed)
		p, err := t.Placement()
		if err != nil {
			return err.Error()
		}
		for _, tr := range p.Transfers() {
			fmt.Fprintf(&b, "\n  %s <- %s %.1f%%", tr.Gainer, tr.Loser, 100*tr.Share)
		}
	}
	return b.String()
}
