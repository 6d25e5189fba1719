package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHandler measures the gateway's own cost per request (routing,
// key and quorum parsing, body read, metrics, response) over a fake node.
func BenchmarkHandler(b *testing.B) {
	value := bytes.Repeat([]byte("v"), 128)
	for _, method := range []string{http.MethodPut, http.MethodGet} {
		b.Run(method, func(b *testing.B) {
			f := newFakeNode()
			g := newTestGateway(b, f, 0)
			put("user/1234", string(value))(f)
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(method, "/kv/"+pathKey+"?w=2", bytes.NewReader(value))
				w := httptest.NewRecorder()
				g.ServeHTTP(w, r)
				if w.Code/100 != 2 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

const pathKey = "user%2F1234"
