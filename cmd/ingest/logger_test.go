package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A duration in a JSON log line reads as a duration, not as nanoseconds.
func TestLogDurationsAsText(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{ReplaceAttr: durationsAsText}))
	log.Info("done", "took", 1500*time.Millisecond)
	if !strings.Contains(b.String(), `"took":"1.5s"`) {
		t.Fatalf("log line %s: want \"took\":\"1.5s\"", b.String())
	}
}
