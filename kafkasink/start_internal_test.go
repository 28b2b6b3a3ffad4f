package kafkasink

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// The probe that keeps the Kafka sink from building a producer per retry
// while no broker accepts connections.
func TestDialAny(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, brokers := range []string{ln.Addr().String(), dead + ", PLAINTEXT://" + ln.Addr().String()} {
		if err := dialAny(ctx, brokers); err != nil {
			t.Errorf("dialAny(%q) = %v, want nil", brokers, err)
		}
	}
	for _, brokers := range []string{dead, "", " , "} {
		if err := dialAny(ctx, brokers); err == nil {
			t.Errorf("dialAny(%q) = nil, want an error", brokers)
		}
	}
}

// The stall check behind /readyz: batches in flight with no ack for longer
// than the limit make the sink not ready; any ack, or nothing in flight,
// makes it ready again.
func TestDeliveryWatch(t *testing.T) {
	var w deliveryWatch
	t0 := time.Unix(1000, 0)
	if err := w.stalled(t0.Add(time.Hour), 10*time.Second); err != nil {
		t.Errorf("nothing in flight: %v", err)
	}
	w.submitted(t0)
	w.submitted(t0.Add(5 * time.Second))
	if err := w.stalled(t0.Add(9*time.Second), 10*time.Second); err != nil {
		t.Errorf("9 s after the first submit: %v", err)
	}
	err := w.stalled(t0.Add(11*time.Second), 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "2 batches") {
		t.Errorf("11 s without an ack: %v, want an error counting 2 batches", err)
	}
	w.acked(t0.Add(12 * time.Second))
	if err := w.stalled(t0.Add(13*time.Second), 10*time.Second); err != nil {
		t.Errorf("1 s after an ack: %v", err)
	}
	if err := w.stalled(t0.Add(23*time.Second), 10*time.Second); err == nil {
		t.Error("11 s after the last ack with a batch in flight: ready, want stalled")
	}
	w.acked(t0.Add(24 * time.Second))
	if err := w.stalled(t0.Add(time.Hour), 10*time.Second); err != nil {
		t.Errorf("all acked: %v", err)
	}
}
