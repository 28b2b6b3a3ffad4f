package schema

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestStringPaths cross-checks the scanner's string paths (short loop,
// IndexByte + word check, slash-escape fast path, per-escape loop) against
// encoding/json on random strings built from the bytes that matter: a
// token is accepted, ending exactly at its last quote, iff encoding/json
// says it is valid. Lengths straddle the 16-byte and 64-byte thresholds.
func TestStringPaths(t *testing.T) {
	alphabet := []string{"a", "Z", "0", "+", "/", "/", `\`, `\/`, `\/`, `\/`, `\\`, `\"`, `"`, `\n`, `\u00e9`, `\u0000`,
		`\ud83d\ude00`, `\ud800`, `\u12`, `\x`, "é", "😀", "\x01", "\x7f", "\t", "u"}
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 20000; n++ {
		var sb strings.Builder
		sb.WriteByte('"')
		length := r.IntN(300)
		// Mostly plain base64-like runs with a few special pieces, the way
		// real bodies look, so that the fast paths are actually taken.
		for sb.Len() < length {
			if r.IntN(8) == 0 {
				sb.WriteString(alphabet[r.IntN(len(alphabet))])
			} else {
				sb.WriteString(alphabet[r.IntN(6)])
			}
		}
		sb.WriteByte('"')
		tok := sb.String()
		s := scanner{b: []byte(tok)}
		_, end, _, err := s.str()
		got := err == nil && s.i == len(tok)
		if want := json.Valid([]byte(tok)); got != want {
			t.Fatalf("str(%q): ok=%v end=%d i=%d err=%v; encoding/json valid=%v", tok, err == nil, end, s.i, err, want)
		}
	}
}

func TestSlashEscapedASCII(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", true},
		{"plain base64 text with no escapes at all, long enough for words", true},
		{strings.Repeat(`abc\/`, 40), true},
		{strings.Repeat(`a`, 31) + `\/` + strings.Repeat(`b`, 40), true}, // escape across a word boundary
		{strings.Repeat(`a`, 39) + `\/`, true},
		{strings.Repeat(`a`, 40) + `\`, false}, // would escape the closing quote
		{strings.Repeat(`a`, 7) + `\` + strings.Repeat(`b`, 40), false},
		{strings.Repeat(`a`, 31) + `\n` + strings.Repeat(`b`, 40), false},
		{strings.Repeat(`a`, 40) + `\\`, false},
		{strings.Repeat(`a`, 40) + `\u0041`, false},
		{strings.Repeat(`a`, 40) + "\x1f", false},
		{strings.Repeat(`a`, 40) + "é", false},
		{`\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/\/`, true},
		{`\/.\/.\/]\/0` + strings.Repeat(`a`, 40), true},
	}
	for _, tt := range tests {
		if got := slashEscapedASCII([]byte(tt.in)); got != tt.want {
			t.Errorf("slashEscapedASCII(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
