package schema

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// This file is a minimal JSON tokenizer. It validates as it goes (RFC 8259
// grammar, UTF-8 inside strings, escape sequences) and never builds values:
// callers get byte ranges into the input. Decode walks a line once with it.

// maxDepth bounds nesting. It is well below encoding/json's 10000, so that
// every line Decode accepts is one encoding/json accepts too, and recursion
// stays shallow.
const maxDepth = 1000

// syntaxError is internal: Decode turns it into an *Error with reason
// malformed_json or invalid_utf8.
type syntaxError struct {
	off  int
	msg  string
	utf8 bool // the problem is an invalid UTF-8 sequence
}

func (e *syntaxError) Error() string { return e.msg }

type scanner struct {
	b []byte
	i int
	// pgUnsafe is set when a string contains \u0000 or an unpaired surrogate
	// escape: valid JSON, but PostgreSQL refuses both in text and jsonb.
	pgUnsafe bool
}

func (s *scanner) errf(msg string) *syntaxError { return &syntaxError{off: s.i, msg: msg} }

func (s *scanner) ws() {
	// Offline lines are compact JSON: the first check almost always exits.
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// asciiClean reports whether p has no control character (< 0x20) and no
// non-ASCII byte, 32 bytes per step: (w - 0x2020..) | w has some high bit
// set exactly when some byte of w is < 0x20 or >= 0x80 (a borrow can flag
// the byte above, but only starts at a byte < 0x20, which is flagged
// anyway). Reslicing rather than indexing lets the compiler drop the bounds
// checks, as in utf8.Valid.
func asciiClean(p []byte) bool {
	p = p[:len(p):len(p)]
	const c20 = lsb * 0x20
	for len(p) >= 32 {
		w1 := binary.LittleEndian.Uint64(p)
		w2 := binary.LittleEndian.Uint64(p[8:])
		w3 := binary.LittleEndian.Uint64(p[16:])
		w4 := binary.LittleEndian.Uint64(p[24:])
		if ((w1-c20)|w1|(w2-c20)|w2|(w3-c20)|w3|(w4-c20)|w4)&msb != 0 {
			return false
		}
		p = p[32:]
	}
	for len(p) >= 8 {
		w := binary.LittleEndian.Uint64(p)
		if ((w-c20)|w)&msb != 0 {
			return false
		}
		p = p[8:]
	}
	for _, c := range p {
		if c < 0x20 || c >= 0x80 {
			return false
		}
	}
	return true
}

// checkChars validates the raw bytes of a string whose quotes and escapes
// are already checked: no control characters, valid UTF-8. Escapes are
// printable ASCII, so the raw span can be checked as a whole, and the common
// all-ASCII case takes the fast path.
func (s *scanner) checkChars(from, to int) *syntaxError {
	seg := s.b[from:to]
	if asciiClean(seg) {
		return nil
	}
	for i := 0; i < len(seg); {
		c := seg[i]
		if c < 0x20 {
			s.i = from + i
			return s.errf("control character in string")
		}
		if c < 0x80 {
			i++
			continue
		}
		r, size := utf8.DecodeRune(seg[i:])
		if r == utf8.RuneError && size == 1 {
			s.i = from + i
			e := s.errf("invalid UTF-8 in string")
			e.utf8 = true
			return e
		}
		i += size
	}
	return nil
}

// indexBackslash returns the index of the first backslash in b[i:j], or -1.
// It is for the gaps between escapes, typically a few dozen bytes, where a
// plain word-at-a-time loop beats the setup of the vectorised
// bytes.IndexByte.
// A byte equal to '\\' makes (x - 0x01..) &^ x set its high bit in
// x = w ^ 0x5c5c.., and borrows never flag a byte below the first real hit.
//
// What costs here is the mispredicted branch where a gap ends, so a hit in
// a 32-byte step is located without further branches: the four words' high
// bits are packed into one 32-bit mask (multiplying by 0x0102040810204080
// gathers bit 8k into bit 56+k) whose lowest set bit is the answer.
func indexBackslash(b []byte, i, j int) int {
	const bsl = lsb * '\\'
	const gather = 0x0102040810204080
	p := b[i:j]
	p = p[:len(p):len(p)]
	for len(p) >= 32 {
		x1 := binary.LittleEndian.Uint64(p) ^ bsl
		x2 := binary.LittleEndian.Uint64(p[8:]) ^ bsl
		x3 := binary.LittleEndian.Uint64(p[16:]) ^ bsl
		x4 := binary.LittleEndian.Uint64(p[24:]) ^ bsl
		m1, m2, m3, m4 := (x1-lsb)&^x1&msb, (x2-lsb)&^x2&msb, (x3-lsb)&^x3&msb, (x4-lsb)&^x4&msb
		if m1|m2|m3|m4 != 0 {
			packed := (m1>>7*gather)>>56 | (m2>>7*gather)>>56<<8 | (m3>>7*gather)>>56<<16 | (m4>>7*gather)>>56<<24
			return j - len(p) + bits.TrailingZeros64(packed)
		}
		p = p[32:]
	}
	for len(p) >= 8 {
		x := binary.LittleEndian.Uint64(p) ^ bsl
		if m := (x - lsb) &^ x & msb; m != 0 {
			return j - len(p) + bits.TrailingZeros64(m)>>3
		}
		p = p[8:]
	}
	for k, c := range p {
		if c == '\\' {
			return j - len(p) + k
		}
	}
	return -1
}

// slashEscapedASCII reports whether p, the raw contents of a string, is
// printable ASCII in which every backslash starts a "\/" escape, the only
// escape in a base64 body written by PHP's json_encode. Checking escapes
// one at a time costs a mispredicted branch each, 32 of them in a 2 KB
// body; this checks them all with branch-free word arithmetic instead, and
// the character check comes for free. It may say false for a valid string
// (other escapes, non-ASCII, a rare borrow artefact); the caller then takes
// the exact path.
//
// Per 8-byte word: B flags backslashes and S slashes ((x - 0x01..) &^ x in
// x = w ^ c); E, the bytes following a backslash, is B shifted up one byte
// plus the carry from the previous word. Every E byte must be in S. S can
// only be wrong right above a true slash, where E cannot be (a backslash
// would sit between), so a bad escape is never missed. A backslash in the
// last byte would escape the closing quote: the final carry rejects that.
func slashEscapedASCII(p []byte) bool {
	const (
		bsl   = lsb * '\\'
		slash = lsb * '/'
		c20   = lsb * 0x20
	)
	var carry, bad uint64
	p = p[:len(p):len(p)]
	// Four words per step, so that the 64-bit constants, which the compiler
	// materialises inside the loop, are shared.
	for len(p) >= 32 {
		w1 := binary.LittleEndian.Uint64(p)
		w2 := binary.LittleEndian.Uint64(p[8:])
		w3 := binary.LittleEndian.Uint64(p[16:])
		w4 := binary.LittleEndian.Uint64(p[24:])
		x1, x2, x3, x4 := w1^bsl, w2^bsl, w3^bsl, w4^bsl
		y1, y2, y3, y4 := w1^slash, w2^slash, w3^slash, w4^slash
		b1, b2, b3, b4 := (x1-lsb)&^x1&msb, (x2-lsb)&^x2&msb, (x3-lsb)&^x3&msb, (x4-lsb)&^x4&msb
		s1, s2, s3, s4 := (y1-lsb)&^y1, (y2-lsb)&^y2, (y3-lsb)&^y3, (y4-lsb)&^y4
		e1, e2, e3, e4 := b1<<8|carry, b2<<8|b1>>56, b3<<8|b2>>56, b4<<8|b3>>56
		carry = b4 >> 56
		bad |= e1&^s1 | e2&^s2 | e3&^s3 | e4&^s4 |
			(w1 - c20) | w1 | (w2 - c20) | w2 | (w3 - c20) | w3 | (w4 - c20) | w4
		p = p[32:]
	}
	for len(p) >= 8 {
		w := binary.LittleEndian.Uint64(p)
		x, y := w^bsl, w^slash
		b := (x - lsb) &^ x & msb
		e := b<<8 | carry
		carry = b >> 56
		bad |= e&^((y-lsb)&^y) | (w - c20) | w
		p = p[8:]
	}
	for _, c := range p {
		if carry != 0 && c != '/' || c < 0x20 || c >= 0x80 {
			return false
		}
		carry = 0
		if c == '\\' {
			carry = 1
		}
	}
	return (bad&msb)|carry == 0
}

// escSimple marks the characters that may follow a backslash other than
// '"' (which may be the quote str took as the end) and 'u' (which needs hex
// digits and the surrogate rules).
var escSimple = func() (t [256]bool) {
	for _, c := range []byte{'\\', '/', 'b', 'f', 'n', 'r', 't'} {
		t[c] = true
	}
	return t
}()

// strSpecial marks the bytes that end a plain run inside a string: quote,
// backslash, control characters and non-ASCII.
var strSpecial = func() (t [256]bool) {
	for i := range t {
		t[i] = i == '"' || i == '\\' || i < 0x20 || i >= 0x80
	}
	return t
}()

// str scans a string starting at the opening quote. It returns the bounds of
// the raw contents (between the quotes) and whether they contain escapes.
//
// Strings come in three shapes, each with its own path:
//   - short ones (member names, small values) end within 16 bytes: a
//     table-driven byte loop, no calls;
//   - long ones without escapes (the ~2 KB base64 body): bytes.IndexByte,
//     which is vectorised, finds the closing quote and then proves there is
//     no backslash before it, and asciiClean checks the characters;
//   - long ones with escapes: if they are all "\/" (a base64 body from
//     PHP's json_encode), slashEscapedASCII checks everything in one
//     branch-free pass; otherwise each escape is checked where it is and
//     indexBackslash finds the next, reusing the quote position until an
//     escape consumes it, and one final pass checks the characters (escapes
//     are printable ASCII, so the raw span can be checked whole).
func (s *scanner) str() (start, end int, esc bool, err *syntaxError) {
	b := s.b
	i := s.i + 1
	start = i
	for lim := min(len(b), i+16); i < lim; i++ {
		if c := b[i]; strSpecial[c] {
			if c == '"' {
				s.i = i + 1
				return start, i, false, nil
			}
			break
		}
	}
	q := -1 // position of the first quote at or after i, once known
scan:
	for {
		if q < i {
			q = bytes.IndexByte(b[i:], '"')
			if q < 0 {
				s.i = len(b)
				return 0, 0, false, s.errf("unterminated string")
			}
			q += i
		}
		var bs int
		if esc {
			bs = indexBackslash(b, i, q)
		} else if bs = bytes.IndexByte(b[i:q], '\\'); bs >= 0 {
			bs += i
			if q-start >= 64 && slashEscapedASCII(b[start:q]) {
				s.i = q + 1
				return start, q, true, nil
			}
		}
		if bs < 0 {
			break
		}
		esc = true
		i = bs
		// Runs of simple escapes stay in this loop: each is checked by
		// table lookup. Anything else (\", \u, an invalid escape) goes to
		// the switch.
		for escSimple[b[i+1]] { // b[i+1] exists: i < q
			i += 2
			bs = indexBackslash(b, i, q)
			if bs < 0 {
				break scan
			}
			i = bs
		}
		if i+1 >= len(b) {
			s.i = i
			return 0, 0, false, s.errf("unterminated escape")
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				s.i = i
				return 0, 0, false, s.errf(`invalid \u escape`)
			}
			i += 6
			switch {
			case r == 0:
				s.pgUnsafe = true
			case r >= 0xD800 && r < 0xDC00:
				// A high surrogate must be followed by \u and a low one.
				if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					if r2, ok := hex4(b, i+2); ok && r2 >= 0xDC00 && r2 < 0xE000 {
						i += 6
						continue
					}
				}
				s.pgUnsafe = true
			case r >= 0xDC00 && r < 0xE000:
				s.pgUnsafe = true
			}
		default:
			s.i = i
			return 0, 0, false, s.errf("invalid escape")
		}
	}
	if err := s.checkChars(start, q); err != nil {
		return 0, 0, false, err
	}
	s.i = q + 1
	return start, q, esc, nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// num scans a number. isInt is true when it has neither fraction nor
// exponent, which is the only form the integer column types accept.
func (s *scanner) num() (start, end int, isInt bool, err *syntaxError) {
	b := s.b
	i := s.i
	start = i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.i = i
		return 0, 0, false, s.errf("invalid number")
	}
	isInt = true
	if i < len(b) && b[i] == '.' {
		isInt = false
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			s.i = i
			return 0, 0, false, s.errf("invalid number: no digits after decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt = false
		var ok bool
		if i, ok = exponentEnd(b, i+1); !ok {
			s.i = i
			return 0, 0, false, s.errf("invalid number: no digits in exponent")
		}
	}
	s.i = i
	return start, i, isInt, nil
}

// exponentEnd returns where the exponent that starts at b[i], just after
// its 'e' or 'E', ends: an optional sign, then digits. ok is false when
// there are no digits. JSON numbers and PostgreSQL numeric strings share
// this grammar.
func exponentEnd(b []byte, i int) (end int, ok bool) {
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	d := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i, i > d
}

// lit consumes the literal word (true, false, null) at s.i.
func (s *scanner) lit(word string) *syntaxError {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return nil
	}
	return s.errf("invalid literal")
}

// elements skips the object or array opened at s.i, up to and including
// end, its closing bracket: the members of an object are key-value pairs,
// those of an array values.
func (s *scanner) elements(end byte, depth int) *syntaxError {
	if depth >= maxDepth {
		return s.errf("nesting too deep")
	}
	s.i++
	for more := s.first(end); more; {
		if end == '}' {
			if _, _, _, err := s.key(); err != nil {
				return err
			}
		} else {
			s.ws()
		}
		if err := s.value(depth + 1); err != nil {
			return err
		}
		var err *syntaxError
		if more, err = s.next(end); err != nil {
			return err
		}
	}
	return nil
}

// key reads an object member's key and the ':' after it, leaving s.i at
// the value: the key's raw bytes are s.b[ks:ke], holding escapes if esc.
func (s *scanner) key() (ks, ke int, esc bool, err *syntaxError) {
	if s.peek() != '"' {
		return 0, 0, false, s.errf("expected string key")
	}
	if ks, ke, esc, err = s.str(); err != nil {
		return 0, 0, false, err
	}
	if s.peek() != ':' {
		return 0, 0, false, s.errf("expected ':'")
	}
	s.i++
	s.ws()
	return ks, ke, esc, nil
}

// first reports whether the object or array just opened, closed by end,
// has members; if not, it moves past end.
func (s *scanner) first(end byte) bool {
	if s.peek() == end {
		s.i++
		return false
	}
	return true
}

// next moves past what follows a member of an object or array closed by
// end: more is true after a ',' (another member follows), false after
// end.
func (s *scanner) next(end byte) (more bool, err *syntaxError) {
	switch s.peek() {
	case ',':
		s.i++
		return true, nil
	case end:
		s.i++
		return false, nil
	}
	return false, s.errf("expected ',' or '" + string(end) + "'")
}

// value skips one JSON value of any kind, validating it. The scanner must be
// positioned at its first byte (no leading whitespace).
func (s *scanner) value(depth int) *syntaxError {
	if s.i >= len(s.b) {
		return s.errf("unexpected end of input")
	}
	switch c := s.b[s.i]; c {
	case '"':
		_, _, _, err := s.str()
		return err
	case '{':
		return s.elements('}', depth)
	case '[':
		return s.elements(']', depth)
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			_, _, _, err := s.num()
			return err
		}
		return s.errf("invalid character")
	}
}

// validJSON reports the first syntax problem in b as a whole (one value,
// optional surrounding whitespace), or nil. Decode uses it only on error
// paths, to rank a syntax problem above a semantic one.
func validJSON(b []byte) *syntaxError {
	s := scanner{b: b}
	s.ws()
	if err := s.value(0); err != nil {
		return err
	}
	if s.ws(); s.i != len(b) {
		return s.errf("data after the JSON value")
	}
	return nil
}

// unescape decodes the contents of a JSON string (between the quotes,
// already validated by str) into dst. Unpaired surrogates become U+FFFD, as
// in encoding/json.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw, i+2)
			i += 6
			if r >= 0xD800 && r < 0xDC00 && i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
				if r2, _ := hex4(raw, i+2); r2 >= 0xDC00 && r2 < 0xE000 {
					r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}
