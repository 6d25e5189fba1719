package node

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestTallyGolden replays testdata/quorum.txt: each line is "need total
// replies -> results", results being the tally's state before any reply and
// after each one.
func TestTallyGolden(t *testing.T) {
	f, err := os.Open("testdata/quorum.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	cases := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		in, want, ok := strings.Cut(text, "->")
		if !ok {
			t.Fatalf("line %d: no ->", line)
		}
		fields := strings.Fields(in)
		need, err1 := strconv.Atoi(fields[0])
		total, err2 := strconv.Atoi(fields[1])
		if err1 != nil || err2 != nil || len(fields) < 3 {
			t.Fatalf("line %d: bad input %q", line, in)
		}
		tl := newTally(need, total)
		got := []string{tl.result().String()}
		for _, r := range fields[2:] {
			switch r {
			case "s":
				got = append(got, tl.success().String())
			case "f":
				got = append(got, tl.failure().String())
			case "-":
			default:
				t.Fatalf("line %d: bad reply %q", line, r)
			}
		}
		if g, w := strings.Join(got, " "), strings.Join(strings.Fields(want), " "); g != w {
			t.Errorf("line %d: %s: got %s, want %s", line, strings.TrimSpace(in), g, w)
		}
		cases++
	}
	if cases == 0 {
		t.Fatal("no cases")
	}
}

func TestTallyOutstandingAndString(t *testing.T) {
	tl := newTally(2, 3)
	tl.success()
	tl.failure()
	if tl.outstanding() != 1 {
		t.Errorf("outstanding = %d, want 1", tl.outstanding())
	}
	if got, want := tl.String(), "2 of 3 needed, 1 received, 1 failed"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
