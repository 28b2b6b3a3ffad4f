package pgserver

import (
	"strings"
	"sync"
)

// logTailSize bounds the in-memory copy of the server log: enough for the
// FATAL lines that explain a failed start, small enough to keep always.
const logTailSize = 16 << 10

// tail keeps the last logTailSize bytes written to it, so startup errors can
// quote the server's own explanation even when the log goes to a caller's
// writer we cannot read back.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - logTailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLines returns at most n trailing lines, for error messages.
func (t *tail) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(t.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
