package stream

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kvs-db/kvs/lsm"
	"github.com/kvs-db/kvs/node/wire"
)

// serveAll calls Serve until Done, resuming from each page's Next, checks
// that the cursor only moves forward, and returns the records and pages.
func serveAll(t *testing.T, scan Scanner, req Request, include func([]byte) bool, budget time.Duration, now func() time.Time) ([]lsm.Record, []Page) {
	t.Helper()
	var recs []lsm.Record
	var pages []Page
	for range 100000 {
		p, err := Serve(scan, req, include, budget, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodePage(p.Encode()); err != nil {
			t.Fatalf("page after %q does not decode: %v", req.After, err)
		}
		pages = append(pages, p)
		recs = append(recs, p.Records...)
		if p.Done {
			return recs, pages
		}
		if bytes.Compare(p.Next, req.After) <= 0 {
			t.Fatalf("page after %q: next %q does not move forward", req.After, p.Next)
		}
		req.After = p.Next
	}
	t.Fatal("Serve never reached Done")
	return nil, nil
}

func pageBytes(p Page) int {
	n := 0
	for i := range p.Records {
		n += wire.RecordLen(&p.Records[i])
	}
	return n
}

func TestServe(t *testing.T) {
	store := newMemStore(genRecords("k", 500, 100, 1)...)
	all := func([]byte) bool { return true }
	odd := func(k []byte) bool { return k[len(k)-1]%2 == 1 }
	none := func([]byte) bool { return false }
	for _, tc := range []struct {
		name     string
		include  func([]byte) bool
		maxBytes int
		after    []byte
		maxPage  int // bound on each page's record bytes
	}{
		{"all, small pages", all, 1000, nil, 1000},
		{"odd keys, small pages", odd, 1000, nil, 1000},
		{"odd keys, one record per page", odd, 1, nil, 130},
		{"all, default cap", all, 0, nil, MaxPageBytes},
		{"all, over the cap", all, 1 << 30, nil, MaxPageBytes},
		{"from the middle", all, 4096, []byte("k00250"), 4096},
		{"from between keys", odd, 4096, []byte("k00250x"), 4096},
		{"none match", none, 1000, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Epoch: 1, Gainer: "g", Loser: "l", After: tc.after, MaxBytes: tc.maxBytes}
			got, pages := serveAll(t, store.scan, req, tc.include, 0, nil)
			want := store.filtered(func(k []byte) bool { return bytes.Compare(k, tc.after) > 0 && tc.include(k) })
			if !slices.EqualFunc(got, want, sameRecord) {
				t.Fatalf("got %d records, want %d", len(got), len(want))
			}
			for i, p := range pages {
				if n := pageBytes(p); n > tc.maxPage {
					t.Errorf("page %d holds %d record bytes, over %d", i, n, tc.maxPage)
				}
			}
		})
	}
}

func TestServeLargeRecordGoesAlone(t *testing.T) {
	big := lsm.Record{Key: []byte("b"), Value: make([]byte, 5000), Version: v(1)}
	store := newMemStore(lsm.Record{Key: []byte("a"), Value: []byte("1"), Version: v(1)}, big,
		lsm.Record{Key: []byte("c"), Value: []byte("3"), Version: v(1)})
	all := func([]byte) bool { return true }
	req := Request{Epoch: 1, Gainer: "g", Loser: "l", MaxBytes: 1000}
	_, pages := serveAll(t, store.scan, req, all, 0, nil)
	var keys []string
	for _, p := range pages {
		var ks string
		for _, r := range p.Records {
			ks += string(r.Key)
		}
		keys = append(keys, ks)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(keys, want) {
		t.Errorf("pages hold keys %q, want %q", keys, want)
	}
	if string(pages[1].Next) != "b" || pages[1].Done {
		t.Errorf("page of the large record: next %q, done %v; want \"b\", not done", pages[1].Next, pages[1].Done)
	}
}

// TestServeBudget: on a clock that advances 1ms per reading, a 10ms
// budget stops a scan that finds few matches after about ten keys, and
// resuming from Next loses and repeats nothing.
func TestServeBudget(t *testing.T) {
	store := newMemStore(genRecords("k", 1000, 10, 1)...)
	rare := func(k []byte) bool { return bytes.HasSuffix(k, []byte("7")) && k[len(k)-2] == '4' } // 1 in 100
	clock := &stepClock{t: time.Unix(0, 0), step: time.Millisecond}
	req := Request{Epoch: 1, Gainer: "g", Loser: "l", MaxBytes: MaxPageBytes}
	got, pages := serveAll(t, store.scan, req, rare, 10*time.Millisecond, clock.now)
	if want := store.filtered(rare); !slices.EqualFunc(got, want, sameRecord) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	if len(pages) < 90 {
		t.Errorf("%d pages: the budget did not stop the scans", len(pages))
	}
	empty := 0
	for _, p := range pages {
		if len(p.Records) == 0 && !p.Done {
			empty++
		}
	}
	if empty == 0 {
		t.Errorf("no page stopped on the budget before finding a record")
	}
}

func TestServeEnd(t *testing.T) {
	all := func([]byte) bool { return true }
	req := Request{Epoch: 1, Gainer: "g", Loser: "l"}
	p, err := Serve(newMemStore().scan, req, all, time.Second, nil)
	if err != nil || !p.Done || p.Next != nil || len(p.Records) != 0 {
		t.Errorf("empty store: %+v, %v", p, err)
	}
	store := newMemStore(genRecords("k", 3, 1, 1)...)
	req.After = []byte("k00002")
	p, err = Serve(store.scan, req, all, time.Second, nil)
	if err != nil || !p.Done || p.Next != nil || len(p.Records) != 0 {
		t.Errorf("after the last key: %+v, %v", p, err)
	}
	req.After = []byte("k00001")
	p, err = Serve(store.scan, req, all, time.Second, nil)
	if err != nil || !p.Done || string(p.Next) != "k00002" || len(p.Records) != 1 {
		t.Errorf("last page: %+v, %v", p, err)
	}
}

func TestServeScanError(t *testing.T) {
	boom := errors.New("boom")
	scan := func([]byte, func(lsm.Record) bool) error { return boom }
	_, err := Serve(scan, Request{Epoch: 1, Gainer: "g", Loser: "l"}, func([]byte) bool { return true }, 0, nil)
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want it to wrap the scan's", err)
	}
}
