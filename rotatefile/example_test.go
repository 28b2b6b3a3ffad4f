package rotatefile_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/dualwrite/ingest/rotatefile"
)

// An ingestion API stores every accepted payload as one line and answers 202;
// when the line cannot be stored (disk full, spool unwritable, shutting down)
// it answers 503 so the client retries instead of losing the event.
func ExampleWriter_Append() {
	spool, err := os.MkdirTemp("", "spool")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(spool)

	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api", Sync: rotatefile.SyncAlways})
	if err != nil {
		log.Fatal(err)
	}

	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(rw, "bad body", http.StatusBadRequest)
			return
		}
		// A real API validates the payload and wraps it as
		// {"table":...,"row":...}; a newline inside would split the record.
		if err := w.Append(body); err != nil {
			log.Printf("offline file: %v", err)
			http.Error(rw, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		rw.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()

	post := func() int {
		resp, err := http.Post(srv.URL, "application/json",
			strings.NewReader(`{"table":"raw_item","row":{"project_id":1,"uuid":"bad3a155-585f-47cb-bc3e-51767d52c2a2"}}`))
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println(post())
	w.Close() // on shutdown, after the HTTP server stopped taking requests
	fmt.Println(post())
	fmt.Println(w.Stats().Lines, "line stored")
	// Output:
	// 202
	// 503
	// 1 line stored
}

// Open fails when another writer owns the stream.
func ExampleOpen() {
	spool, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(spool)
	w, err := rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	_, err = rotatefile.Open(rotatefile.Options{Dir: spool, Stream: "api"})
	fmt.Println(err != nil)
	// Output: true
}
