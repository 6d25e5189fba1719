package lsm

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestScanRange(t *testing.T) {
	db := openMem(t, NewMemFS(), func(o *Options) { o.MemtableBytes = 1024 })
	defer db.Close()
	for i := 0; i < 100; i++ {
		mustApply(t, db, put(fmt.Sprintf("k%03d", i), fmt.Sprint(i), v(uint64(i+1))))
		if i%30 == 29 {
			db.Flush()
		}
	}
	mustApply(t, db, del("k050", v(500)))
	tests := []struct {
		name       string
		start, end string
		limit      int
		want       []string
	}{
		{"all", "", "", 0, nil},
		{"range", "k010", "k013", 0, []string{"k010", "k011", "k012"}},
		{"start between keys", "k0105", "k012", 0, []string{"k011"}},
		{"tombstone included", "k050", "k051", 0, []string{"k050"}},
		{"empty range", "k020", "k020", 0, []string{}},
		{"stop early", "k090", "", 2, []string{"k090", "k091"}},
		{"past the end", "z", "", 0, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var start, end []byte
			if tt.start != "" {
				start = []byte(tt.start)
			}
			if tt.end != "" {
				end = []byte(tt.end)
			}
			got := []string{}
			err := db.Scan(start, end, func(r Record) bool {
				got = append(got, string(r.Key))
				if string(r.Key) == "k050" && !r.Tombstone {
					t.Errorf("k050 is not a tombstone")
				}
				return tt.limit == 0 || len(got) < tt.limit
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if len(got) != 100 {
					t.Fatalf("got %d keys", len(got))
				}
				return
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestScanSnapshot overwrites every key, adds keys, flushes and compacts
// from inside a Scan: the Scan still sees exactly the state of its start.
func TestScanSnapshot(t *testing.T) {
	db := openMem(t, NewMemFS(), func(o *Options) { o.MemtableBytes = 2048 })
	defer db.Close()
	const n = 300
	for i := 0; i < n; i++ {
		mustApply(t, db, put(fmt.Sprintf("k%04d", i), "old", v(uint64(i+1))))
	}
	var got int
	err := db.Scan(nil, nil, func(r Record) bool {
		if got == 0 {
			for i := 0; i < n; i++ {
				mustApply(t, db, put(fmt.Sprintf("k%04d", i), "new", v(uint64(n+i+1))))
				mustApply(t, db, put(fmt.Sprintf("k%04da", i), "added", v(uint64(n+i+1))))
			}
			for i := 0; i < 6; i++ {
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if string(r.Key) != fmt.Sprintf("k%04d", got) || string(r.Value) != "old" {
			t.Fatalf("record %d: %q=%q", got, r.Key, r.Value)
		}
		got++
		return true
	})
	if err != nil || got != n {
		t.Fatalf("scan saw %d records, %v", got, err)
	}
	if c := countKeys(t, db); c != 2*n {
		t.Fatalf("after the writes: %d keys", c)
	}
}

// TestScanConcurrentWrites runs scans while writers, flushes and compactions
// go on (run with -race): every scan is strictly ascending and every record
// it returns is one that was written.
func TestScanConcurrentWrites(t *testing.T) {
	db := openMem(t, NewMemFS(), func(o *Options) { o.MemtableBytes = 4096 })
	defer db.Close()
	const keys = 200
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3000; i++ {
				k := fmt.Sprintf("k%04d", (i*7+w)%keys)
				ver := Version{Counter: uint64(i + 1), Node: uint32(w)}
				if _, _, err := db.Apply(put(k, k+"@"+ver.String(), ver)); err != nil {
					t.Error(err)
					return
				}
				if i%300 == 299 {
					db.Flush()
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	scans := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		var prev []byte
		err := db.Scan(nil, nil, func(r Record) bool {
			if prev != nil && bytes.Compare(prev, r.Key) >= 0 {
				t.Fatalf("scan not ascending: %q after %q", r.Key, prev)
			}
			if string(r.Value) != string(r.Key)+"@"+r.Version.String() {
				t.Fatalf("scan returned %q=%q@%v", r.Key, r.Value, r.Version)
			}
			prev = append(prev[:0], r.Key...)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		scans++
	}
	st := db.Stats()
	t.Logf("%d scans; %d flushes, %d compactions", scans, st.Flushes, st.Compactions)
}
